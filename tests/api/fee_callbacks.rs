//! Fee lists (CDRs): batches stored whole, re-pushes recognised, nothing counted twice.

use serde_json::json;
use sqlx::PgPool;
use time::macros::datetime;

use crate::helpers::{FEE_SAMPLE, answered_outcome, fee_body, json, spawn_app};

/// The platform's own fee sample: one CDR with every field in its column.
#[sqlx::test]
async fn the_platform_fee_sample_is_stored_with_every_field(pool: PgPool) {
    let app = spawn_app(pool).await;

    let response = app.post("/voicecall/fee", FEE_SAMPLE).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await,
        json!({"resultcode": "0", "resultdesc": "Success"})
    );
    let row: (String, String, Option<i32>, Option<String>, Option<String>, Option<time::OffsetDateTime>, Option<time::OffsetDateTime>) =
        sqlx::query_as(
            "select session_id, dedup_key, direction, icid, fwd_dst_num, fwd_answer_time, call_end_time from cdrs",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        row,
        (
            "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com".into(),
            "icid:CAE-20190124110424-12019775".into(),
            Some(0),
            Some("CAE-20190124110424-12019775".into()),
            Some("+86138*******1".into()),
            Some(datetime!(2019-01-24 03:04:38 UTC)),
            Some(datetime!(2019-01-24 03:04:49 UTC)),
        )
    );
    let blanks: (
        Option<time::OffsetDateTime>,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<String>,
    ) = sqlx::query_as(
        "select fail_time, record_object_name, service_type, ul_fail_reason, user_data from cdrs",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        blanks,
        (None, None, Some("002".into()), Some(0), None),
        "empty strings are stored as NULL"
    );
}

/// A full batch of 50 CDRs: 50 rows, one raw row with the counts.
#[sqlx::test]
async fn a_batch_of_fifty_cdrs_is_stored_in_one_request(pool: PgPool) {
    let app = spawn_app(pool).await;

    let response = app.post("/voicecall/fee", fee_body("batch", 50)).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.count("cdrs").await, 50);
    let counts: (String, i32, i32, i32, i32) = sqlx::query_as(
        "select outcome, records_total, records_stored, records_duplicate, records_rejected from raw_callbacks",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(counts, ("stored".into(), 50, 50, 0, 0));
}

/// The platform re-pushes a batch up to six times: seven deliveries still make 50 rows.
#[sqlx::test]
async fn a_batch_delivered_seven_times_is_stored_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = fee_body("repush", 50);

    for delivery in 0..7 {
        let response = app.post("/voicecall/fee", body.clone()).await;
        assert_eq!(response.status(), 200, "delivery {delivery}");
        assert_eq!(
            answered_outcome(&response).as_deref(),
            Some("accepted"),
            "delivery {delivery}: answered once kept"
        );
        let expected = if delivery == 0 { "stored" } else { "duplicate" };
        assert_eq!(
            app.kept_outcome(&response).await,
            expected,
            "delivery {delivery}: projected"
        );
    }

    assert_eq!(app.count("cdrs").await, 50);
    let duplicates: i64 = sqlx::query_scalar("select sum(records_duplicate) from raw_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!((app.count("raw_callbacks").await, duplicates), (7, 300));
}

/// Concurrent re-pushes of one batch race on the unique key, not on a read: 50 rows.
#[sqlx::test]
async fn concurrent_deliveries_of_a_batch_store_each_cdr_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = fee_body("race", 50);

    let mut deliveries = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (client, url, body) = (app.client.clone(), app.url("/voicecall/fee"), body.clone());
        deliveries.spawn(async move { client.post(url).body(body).send().await.unwrap().status() });
    }
    let statuses = deliveries.join_all().await;
    app.projected().await;

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.count("cdrs").await, 50);
    let counts: (i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where outcome = 'stored'), sum(records_stored), sum(records_duplicate)
         from raw_callbacks",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (stored_receipts, stored, duplicate) = counts;
    assert!(stored_receipts >= 1, "some delivery stored the CDRs");
    assert_eq!(
        (stored, duplicate),
        (50, 450),
        "each CDR counted stored once and duplicate for every other delivery"
    );
}

/// A re-push that overlaps an earlier batch stores only the new CDRs.
#[sqlx::test]
async fn an_overlapping_batch_stores_only_new_cdrs(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.post("/voicecall/fee", fee_body("overlap", 10)).await;

    let response = app.post("/voicecall/fee", fee_body("overlap", 15)).await;

    assert_eq!(answered_outcome(&response).as_deref(), Some("accepted"));
    assert_eq!(app.kept_outcome(&response).await, "stored");
    assert_eq!(app.count("cdrs").await, 15);
    let counts: (i32, i32) = sqlx::query_as(
        "select records_stored, records_duplicate from raw_callbacks order by id desc limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(counts, (5, 10));
}

/// Without an icid the whole record is the identity: a repeat is a duplicate, a different
/// CDR of the same session is not.
#[sqlx::test]
async fn cdrs_without_icid_are_deduplicated_by_content(pool: PgPool) {
    let app = spawn_app(pool).await;
    let leg = |callee: &str| json!({"sessionId": "no-icid", "callerNum": "+8613800000001", "calleeNum": callee, "callEndTime": "2026-11-24 06:01:00"});
    let body =
        json!({"eventType": "fee", "feeLst": [leg("+8613800000002"), leg("+8613800000003")]})
            .to_string();

    app.post("/voicecall/fee", body.clone()).await;
    let again = app.post("/voicecall/fee", body).await;

    assert_eq!(answered_outcome(&again).as_deref(), Some("accepted"));
    assert_eq!(app.kept_outcome(&again).await, "duplicate");
    let keys: Vec<String> = sqlx::query_scalar("select dedup_key from cdrs order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.starts_with("sha256:")), "{keys:?}");
}

/// A CDR time that cannot be read is kept raw; the CDR is still stored.
#[sqlx::test]
async fn an_unreadable_cdr_time_is_kept_raw(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({"eventType": "fee", "feeLst": [{"sessionId": "t", "icid": "i", "callEndTime": "24/11/2026 06:01"}]});

    let response = app.post("/voicecall/fee", body.to_string()).await;

    assert_eq!(response.status(), 200);
    let row: (Option<time::OffsetDateTime>, serde_json::Value) =
        sqlx::query_as("select call_end_time, unparsed_times from cdrs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(row, (None, json!({"callEndTime": "24/11/2026 06:01"})));
}

/// Every FeeInfo field of the spec, each with its own value, lands in its own column; a field the
/// spec does not list is kept in `extra`.
#[sqlx::test]
async fn every_fee_info_field_lands_in_its_column(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({"eventType": "fee", "feeLst": [{
        "direction": 1, "spId": "sp-1", "appKey": "app-1", "icid": "icid-1", "bindNum": "+867550000001",
        "sessionId": "s-every-field", "callerNum": "+867550000002", "calleeNum": "+8613800000003",
        "fwdDisplayNum": "+867550000004", "fwdDstNum": "+8613800000005",
        "fwdStartTime": "2026-11-24 06:00:06", "fwdAlertingTime": "2026-11-24 06:00:07",
        "fwdAnswerTime": "2026-11-24 06:00:08", "callEndTime": "2026-11-24 06:01:08",
        "fwdUnaswRsn": 16, "failTime": "2026-11-24 06:01:09", "ulFailReason": 518, "sipStatusCode": 480,
        "callOutStartTime": "2026-11-24 06:00:00", "callOutAlertingTime": "2026-11-24 06:00:01",
        "callOutAnswerTime": "2026-11-24 06:00:02", "callOutUnaswRsn": 31,
        "dynIVRStartTime": "2026-11-24 06:00:03", "dynIVRPath": "0-2-3", "recordFlag": 1,
        "recordStartTime": "2026-11-24 06:00:09", "recordObjectName": "rec.wav", "recordBucketName": "bucket",
        "recordDomain": "record.example.com", "recordFileDownloadUrl": "https://record.example.com/rec.wav",
        "ttsPlayTimes": 2, "ttsTransDuration": 3, "serviceType": "002", "hostName": "callenabler1.example.com",
        "userData": "order-9", "newVendorField": {"kept": true}
    }]});

    let response = app.post("/voicecall/fee", body.to_string()).await;

    assert_eq!(response.status(), 200);
    let row: serde_json::Value = sqlx::query_scalar(
        "select to_jsonb(c) - 'id' - 'raw_callback_id' - 'received_at' from cdrs c",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        json!({
            "session_id": "s-every-field", "dedup_key": "icid:icid-1", "direction": 1, "sp_id": "sp-1",
            "app_key": "app-1", "icid": "icid-1", "bind_num": "+867550000001",
            "caller_num": "+867550000002", "callee_num": "+8613800000003",
            "fwd_display_num": "+867550000004", "fwd_dst_num": "+8613800000005",
            "fwd_start_time": "2026-11-24T06:00:06+00:00", "fwd_alerting_time": "2026-11-24T06:00:07+00:00",
            "fwd_answer_time": "2026-11-24T06:00:08+00:00", "call_end_time": "2026-11-24T06:01:08+00:00",
            "fwd_unasw_rsn": 16, "fail_time": "2026-11-24T06:01:09+00:00", "ul_fail_reason": 518,
            "sip_status_code": 480, "call_out_start_time": "2026-11-24T06:00:00+00:00",
            "call_out_alerting_time": "2026-11-24T06:00:01+00:00",
            "call_out_answer_time": "2026-11-24T06:00:02+00:00", "call_out_unasw_rsn": 31,
            "dyn_ivr_start_time": "2026-11-24T06:00:03+00:00", "dyn_ivr_path": "0-2-3", "record_flag": 1,
            "record_start_time": "2026-11-24T06:00:09+00:00", "record_object_name": "rec.wav",
            "record_bucket_name": "bucket", "record_domain": "record.example.com",
            "record_file_download_url": "https://record.example.com/rec.wav", "tts_play_times": 2,
            "tts_trans_duration": 3, "service_type": "002", "host_name": "callenabler1.example.com",
            "user_data": "order-9", "unparsed_times": null, "extra": {"newVendorField": {"kept": true}}
        })
    );
}
