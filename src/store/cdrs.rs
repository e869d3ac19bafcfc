//! `cdrs`: one row per CDR. A fee list goes in with one statement (UNNEST over column arrays),
//! and re-pushed CDRs are skipped by the `(session_id, dedup_key)` unique constraint.

use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, non_empty, read_time};
use crate::platform::callback::FeeRecord;

type Text<'a> = Vec<Option<&'a str>>;
type Int = Vec<Option<i32>>;
type Time = Vec<Option<OffsetDateTime>>;
type Jsonb = Vec<Option<Json<Map<String, Value>>>>;
type JsonbRef<'a> = Vec<Option<Json<&'a Map<String, Value>>>>;

/// The fee list as one array per column, in the order of `INSERT_CDRS`.
#[derive(Default)]
struct Columns<'a> {
    raw_callback_id: Vec<Uuid>,
    received_at: Vec<OffsetDateTime>,
    session_id: Vec<&'a str>,
    dedup_key: Vec<&'a str>,
    direction: Int,
    sp_id: Text<'a>,
    app_key: Text<'a>,
    icid: Text<'a>,
    bind_num: Text<'a>,
    caller_num: Text<'a>,
    callee_num: Text<'a>,
    fwd_display_num: Text<'a>,
    fwd_dst_num: Text<'a>,
    fwd_start_time: Time,
    fwd_alerting_time: Time,
    fwd_answer_time: Time,
    call_end_time: Time,
    fwd_unasw_rsn: Int,
    fail_time: Time,
    ul_fail_reason: Int,
    sip_status_code: Int,
    call_out_start_time: Time,
    call_out_alerting_time: Time,
    call_out_answer_time: Time,
    call_out_unasw_rsn: Int,
    dyn_ivr_start_time: Time,
    dyn_ivr_path: Text<'a>,
    record_flag: Int,
    record_start_time: Time,
    record_object_name: Text<'a>,
    record_bucket_name: Text<'a>,
    record_domain: Text<'a>,
    record_file_download_url: Text<'a>,
    tts_play_times: Int,
    tts_trans_duration: Int,
    service_type: Text<'a>,
    host_name: Text<'a>,
    user_data: Text<'a>,
    unparsed_times: Jsonb,
    extra: JsonbRef<'a>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, new: &NewCdr<'a>) {
        let record = new.record;
        let info = &record.info;
        self.raw_callback_id.push(new.raw_callback_id);
        self.received_at.push(new.received_at);
        let mut unparsed = Map::new();
        let mut time =
            |name: &str, raw: &Option<String>| read_time(name, raw.as_deref(), &mut unparsed);
        self.fwd_start_time
            .push(time("fwdStartTime", &info.fwd_start_time));
        self.fwd_alerting_time
            .push(time("fwdAlertingTime", &info.fwd_alerting_time));
        self.fwd_answer_time
            .push(time("fwdAnswerTime", &info.fwd_answer_time));
        self.call_end_time
            .push(time("callEndTime", &info.call_end_time));
        self.fail_time.push(time("failTime", &info.fail_time));
        self.call_out_start_time
            .push(time("callOutStartTime", &info.call_out_start_time));
        self.call_out_alerting_time
            .push(time("callOutAlertingTime", &info.call_out_alerting_time));
        self.call_out_answer_time
            .push(time("callOutAnswerTime", &info.call_out_answer_time));
        self.dyn_ivr_start_time
            .push(time("dynIVRStartTime", &info.dyn_ivr_start_time));
        self.record_start_time
            .push(time("recordStartTime", &info.record_start_time));
        self.unparsed_times.push(non_empty(unparsed));

        self.session_id.push(&record.session_id);
        self.dedup_key.push(&record.dedup_key);
        self.direction.push(info.direction);
        self.sp_id.push(info.sp_id.as_deref());
        self.app_key.push(info.app_key.as_deref());
        self.icid.push(info.icid.as_deref());
        self.bind_num.push(info.bind_num.as_deref());
        self.caller_num.push(info.caller_num.as_deref());
        self.callee_num.push(info.callee_num.as_deref());
        self.fwd_display_num.push(info.fwd_display_num.as_deref());
        self.fwd_dst_num.push(info.fwd_dst_num.as_deref());
        self.fwd_unasw_rsn.push(info.fwd_unasw_rsn);
        self.ul_fail_reason.push(info.ul_fail_reason);
        self.sip_status_code.push(info.sip_status_code);
        self.call_out_unasw_rsn.push(info.call_out_unasw_rsn);
        self.dyn_ivr_path.push(info.dyn_ivr_path.as_deref());
        self.record_flag.push(info.record_flag);
        self.record_object_name
            .push(info.record_object_name.as_deref());
        self.record_bucket_name
            .push(info.record_bucket_name.as_deref());
        self.record_domain.push(info.record_domain.as_deref());
        self.record_file_download_url
            .push(info.record_file_download_url.as_deref());
        self.tts_play_times.push(info.tts_play_times);
        self.tts_trans_duration.push(info.tts_trans_duration);
        self.service_type.push(info.service_type.as_deref());
        self.host_name.push(info.host_name.as_deref());
        self.user_data.push(info.user_data.as_deref());
        self.extra
            .push((!info.extra.is_empty()).then_some(Json(&info.extra)));
    }
}

const INSERT_CDRS: &str = "
insert into cdrs (raw_callback_id, received_at,
    session_id, dedup_key, direction, sp_id, app_key, icid, bind_num, caller_num, callee_num,
    fwd_display_num, fwd_dst_num, fwd_start_time, fwd_alerting_time, fwd_answer_time, call_end_time,
    fwd_unasw_rsn, fail_time, ul_fail_reason, sip_status_code, call_out_start_time,
    call_out_alerting_time, call_out_answer_time, call_out_unasw_rsn, dyn_ivr_start_time, dyn_ivr_path,
    record_flag, record_start_time, record_object_name, record_bucket_name, record_domain,
    record_file_download_url, tts_play_times, tts_trans_duration, service_type, host_name, user_data,
    unparsed_times, extra)
select * from unnest(
    $1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::int4[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
    $11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[],
    $17::timestamptz[], $18::int4[], $19::timestamptz[], $20::int4[], $21::int4[], $22::timestamptz[],
    $23::timestamptz[], $24::timestamptz[], $25::int4[], $26::timestamptz[], $27::text[], $28::int4[],
    $29::timestamptz[], $30::text[], $31::text[], $32::text[], $33::text[], $34::int4[], $35::int4[],
    $36::text[], $37::text[], $38::text[], $39::jsonb[], $40::jsonb[])
on conflict (session_id, dedup_key) do nothing
returning raw_callback_id, session_id";

/// One CDR to store, with the request that brought it.
pub struct NewCdr<'a> {
    pub raw_callback_id: Uuid,
    pub received_at: OffsetDateTime,
    pub record: &'a FeeRecord,
}

/// Stores CDRs in one statement; returns (request, session) of those that were new (the rest
/// were already there). Rows go in key order, so two writers never wait on each other in a cycle.
pub async fn insert(
    connection: &mut PgConnection,
    new: &[NewCdr<'_>],
) -> Result<Vec<(Uuid, String)>, StoreError> {
    let mut order: Vec<&NewCdr<'_>> = new.iter().collect();
    order.sort_by(|a, b| {
        (&a.record.session_id, &a.record.dedup_key)
            .cmp(&(&b.record.session_id, &b.record.dedup_key))
    });
    let mut c = Columns::default();
    for cdr in order {
        c.push(cdr);
    }
    let stored: Vec<(Uuid, String)> = sqlx::query_as(INSERT_CDRS)
        .bind(c.raw_callback_id)
        .bind(c.received_at)
        .bind(c.session_id)
        .bind(c.dedup_key)
        .bind(c.direction)
        .bind(c.sp_id)
        .bind(c.app_key)
        .bind(c.icid)
        .bind(c.bind_num)
        .bind(c.caller_num)
        .bind(c.callee_num)
        .bind(c.fwd_display_num)
        .bind(c.fwd_dst_num)
        .bind(c.fwd_start_time)
        .bind(c.fwd_alerting_time)
        .bind(c.fwd_answer_time)
        .bind(c.call_end_time)
        .bind(c.fwd_unasw_rsn)
        .bind(c.fail_time)
        .bind(c.ul_fail_reason)
        .bind(c.sip_status_code)
        .bind(c.call_out_start_time)
        .bind(c.call_out_alerting_time)
        .bind(c.call_out_answer_time)
        .bind(c.call_out_unasw_rsn)
        .bind(c.dyn_ivr_start_time)
        .bind(c.dyn_ivr_path)
        .bind(c.record_flag)
        .bind(c.record_start_time)
        .bind(c.record_object_name)
        .bind(c.record_bucket_name)
        .bind(c.record_domain)
        .bind(c.record_file_download_url)
        .bind(c.tts_play_times)
        .bind(c.tts_trans_duration)
        .bind(c.service_type)
        .bind(c.host_name)
        .bind(c.user_data)
        .bind(c.unparsed_times)
        .bind(c.extra)
        .fetch_all(connection)
        .await?;
    Ok(stored)
}
