//! `cdrs`: one row per CDR, its columns defined once ([`CdrRow`]). A fee list goes in with one
//! statement (UNNEST over column arrays), and re-pushed CDRs are skipped by the
//! `(session_id, dedup_key)` unique constraint.

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    StoreError, TimeReader,
    table::{self, table},
};
use crate::platform::callback::FeeRecord;

table! {
    /// A `cdrs` row (column meanings: `\d+ cdrs`).
    #[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
    #[schema(as = Cdr)]
    pub struct CdrRow {
        pub id: i64,
        pub raw_callback_id: Uuid as Uuid = |c| c.raw_callback_id,
        pub session_id: String as &'a str = |c| &c.record.session_id,
        pub dedup_key: String as &'a str = |c| &c.record.dedup_key,
        pub direction: Option<i32> as Option<i32> = |c| c.record.info.direction,
        pub sp_id: Option<String> as Option<&'a str> = |c| c.record.info.sp_id.as_deref(),
        pub app_key: Option<String> as Option<&'a str> = |c| c.record.info.app_key.as_deref(),
        pub icid: Option<String> as Option<&'a str> = |c| c.record.info.icid.as_deref(),
        pub bind_num: Option<String> as Option<&'a str> = |c| c.record.info.bind_num.as_deref(),
        pub caller_num: Option<String> as Option<&'a str> = |c| c.record.info.caller_num.as_deref(),
        pub callee_num: Option<String> as Option<&'a str> = |c| c.record.info.callee_num.as_deref(),
        pub fwd_display_num: Option<String> as Option<&'a str>
            = |c| c.record.info.fwd_display_num.as_deref(),
        pub fwd_dst_num: Option<String> as Option<&'a str>
            = |c| c.record.info.fwd_dst_num.as_deref(),
        #[serde(with = "time::serde::rfc3339::option")]
        pub fwd_start_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("fwdStartTime", &c.record.info.fwd_start_time),
        #[serde(with = "time::serde::rfc3339::option")]
        pub fwd_alerting_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("fwdAlertingTime", &c.record.info.fwd_alerting_time),
        #[serde(with = "time::serde::rfc3339::option")]
        pub fwd_answer_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("fwdAnswerTime", &c.record.info.fwd_answer_time),
        #[serde(with = "time::serde::rfc3339::option")]
        pub call_end_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("callEndTime", &c.record.info.call_end_time),
        pub fwd_unasw_rsn: Option<i32> as Option<i32> = |c| c.record.info.fwd_unasw_rsn,
        #[serde(with = "time::serde::rfc3339::option")]
        pub fail_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("failTime", &c.record.info.fail_time),
        pub ul_fail_reason: Option<i32> as Option<i32> = |c| c.record.info.ul_fail_reason,
        pub sip_status_code: Option<i32> as Option<i32> = |c| c.record.info.sip_status_code,
        #[serde(with = "time::serde::rfc3339::option")]
        pub call_out_start_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("callOutStartTime", &c.record.info.call_out_start_time),
        #[serde(with = "time::serde::rfc3339::option")]
        pub call_out_alerting_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("callOutAlertingTime", &c.record.info.call_out_alerting_time),
        #[serde(with = "time::serde::rfc3339::option")]
        pub call_out_answer_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("callOutAnswerTime", &c.record.info.call_out_answer_time),
        pub call_out_unasw_rsn: Option<i32> as Option<i32> = |c| c.record.info.call_out_unasw_rsn,
        #[serde(with = "time::serde::rfc3339::option")]
        pub dyn_ivr_start_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("dynIVRStartTime", &c.record.info.dyn_ivr_start_time),
        pub dyn_ivr_path: Option<String> as Option<&'a str>
            = |c| c.record.info.dyn_ivr_path.as_deref(),
        pub record_flag: Option<i32> as Option<i32> = |c| c.record.info.record_flag,
        #[serde(with = "time::serde::rfc3339::option")]
        pub record_start_time: Option<OffsetDateTime> as Option<OffsetDateTime>
            = |c| c.times.read("recordStartTime", &c.record.info.record_start_time),
        pub record_object_name: Option<String> as Option<&'a str>
            = |c| c.record.info.record_object_name.as_deref(),
        pub record_bucket_name: Option<String> as Option<&'a str>
            = |c| c.record.info.record_bucket_name.as_deref(),
        pub record_domain: Option<String> as Option<&'a str>
            = |c| c.record.info.record_domain.as_deref(),
        pub record_file_download_url: Option<String> as Option<&'a str>
            = |c| c.record.info.record_file_download_url.as_deref(),
        pub tts_play_times: Option<i32> as Option<i32> = |c| c.record.info.tts_play_times,
        pub tts_trans_duration: Option<i32> as Option<i32> = |c| c.record.info.tts_trans_duration,
        pub service_type: Option<String> as Option<&'a str>
            = |c| c.record.info.service_type.as_deref(),
        pub host_name: Option<String> as Option<&'a str> = |c| c.record.info.host_name.as_deref(),
        pub user_data: Option<String> as Option<&'a str> = |c| c.record.info.user_data.as_deref(),
        /// Time fields that were present but unreadable, `{"<wire name>": "<raw>"}`. Taken after
        /// the time fields above, which gather them.
        pub unparsed_times: Option<Value> as Option<Json<Map<String, Value>>>
            = |c| c.times.unparsed(),
        /// FeeInfo fields the spec does not list, as received.
        pub extra: Option<Value> as Option<Json<&'a Map<String, Value>>>
            = |c| (!c.record.info.extra.is_empty()).then_some(Json(&c.record.info.extra)),
        #[serde(with = "time::serde::rfc3339")]
        pub received_at: OffsetDateTime as OffsetDateTime = |c| c.received_at,
    }
    written from Prepared<'a> as Arrays<'a> {}
}

impl CdrRow {
    pub fn sort_key(&self) -> (OffsetDateTime, i64) {
        (self.call_end_time.unwrap_or(self.received_at), self.id)
    }
}

/// A CDR on its way into the arrays. Its time fields are read as they are taken, and the
/// unreadable ones gathered here for `unparsed_times`.
struct Prepared<'a> {
    raw_callback_id: Uuid,
    received_at: OffsetDateTime,
    record: &'a FeeRecord,
    times: TimeReader,
}

/// `insert into cdrs (…) select … from unnest(…)`, skipping re-pushed CDRs.
static INSERT_CDRS: LazyLock<String> = LazyLock::new(|| {
    let written = Arrays::written();
    format!(
        "insert into cdrs ({}) select {} from {}
         on conflict (session_id, dedup_key) do nothing
         returning id, raw_callback_id, session_id, dedup_key",
        table::names(&written),
        table::names(&written),
        table::unnest(&written),
    )
});

/// One CDR to store, with the request that brought it.
pub struct NewCdr<'a> {
    pub raw_callback_id: Uuid,
    pub received_at: OffsetDateTime,
    pub record: &'a FeeRecord,
}

/// A CDR `insert` stored (it was not there yet).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredCdr {
    pub id: i64,
    pub raw_callback_id: Uuid,
    pub session_id: String,
    pub dedup_key: String,
}

/// Stores CDRs in one statement; returns those that were new (the rest were already there).
/// Rows go in key order, so two writers never wait on each other in a cycle; of two CDRs with
/// one key in `new`, the first is the one stored.
pub async fn insert(
    connection: &mut PgConnection,
    new: &[NewCdr<'_>],
) -> Result<Vec<StoredCdr>, StoreError> {
    let mut order: Vec<&NewCdr<'_>> = new.iter().collect();
    order.sort_by(|a, b| {
        (&a.record.session_id, &a.record.dedup_key)
            .cmp(&(&b.record.session_id, &b.record.dedup_key))
    });
    let mut arrays = Arrays::with_capacity(order.len());
    for cdr in order {
        arrays.push(&Prepared {
            raw_callback_id: cdr.raw_callback_id,
            received_at: cdr.received_at,
            record: cdr.record,
            times: TimeReader::default(),
        });
    }
    let arguments = arrays.into_arguments().map_err(table::encode_failed)?;
    let stored = sqlx::query_as_with(&INSERT_CDRS, arguments)
        .fetch_all(connection)
        .await?;
    Ok(stored)
}
