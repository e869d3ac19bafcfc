-- The receiver's tables. Users query them directly, so every column is documented here, once,
-- with COMMENT (psql: \d+ raw_callbacks).

-- Every request that reached a callback endpoint, as received, whatever became of it.
create table raw_callbacks (
    id uuid primary key,
    received_at timestamptz not null,
    endpoint text not null,
    method text not null,
    path text not null,
    peer_addr text,
    headers jsonb not null,
    body bytea not null,
    body_truncated boolean not null default false,
    event_type text,
    app_key text,
    signature_verdict text not null,
    outcome text not null,
    http_status smallint not null,
    error jsonb,
    records_total integer,
    records_stored integer,
    records_duplicate integer,
    records_rejected integer,
    request_id text,
    constraint raw_callbacks_outcome_check
        check (outcome in ('stored', 'duplicate', 'partial', 'rejected', 'unauthorized'))
);

comment on table raw_callbacks is 'Every callback request as received, with its outcome. Rejected ones can be inspected and reprocessed from here.';
comment on column raw_callbacks.id is 'UUIDv7: sorts by receive time. Returned to the sender in the X-Callhook-Callback-Id header.';
comment on column raw_callbacks.received_at is 'When callhook received the request (UTC).';
comment on column raw_callbacks.endpoint is 'Which endpoint: status, fee or events.';
comment on column raw_callbacks.method is 'HTTP method (a non-POST is kept too, as a 405).';
comment on column raw_callbacks.path is 'Path and query as received.';
comment on column raw_callbacks.peer_addr is 'TCP peer address (a proxy, if there is one; see headers.x-forwarded-for).';
comment on column raw_callbacks.headers is 'The relevant request headers; the PasswordDigest of X-AKSK is replaced by [redacted].';
comment on column raw_callbacks.body is 'The body bytes exactly as received (only the first http.body_limit_bytes when body_truncated).';
comment on column raw_callbacks.body_truncated is 'True when the body was over the limit (answered 413) and only its beginning is kept.';
comment on column raw_callbacks.event_type is 'eventType as written in the body, when it could be read.';
comment on column raw_callbacks.app_key is 'Username of X-AKSK, else appKey of the first CDR.';
comment on column raw_callbacks.signature_verdict is 'not_checked, absent, malformed, unknown_app, bad_digest, stale, replayed or valid.';
comment on column raw_callbacks.outcome is 'stored (new rows written), duplicate (all already stored), partial (some CDRs refused, the rest stored), rejected (bad input, nothing stored), unauthorized (signature refused in enforce mode).';
comment on column raw_callbacks.http_status is 'The status code callhook answered.';
comment on column raw_callbacks.error is 'For refused requests and refused CDRs: {code, message, field, records:[{index, code, field, message}]}.';
comment on column raw_callbacks.records_total is 'Fee lists: number of CDRs in feeLst.';
comment on column raw_callbacks.records_stored is 'Fee lists: CDRs written as new rows.';
comment on column raw_callbacks.records_duplicate is 'Fee lists: CDRs already stored by an earlier delivery.';
comment on column raw_callbacks.records_rejected is 'Fee lists: CDRs that could not be read (see error.records).';
comment on column raw_callbacks.request_id is 'x-request-id of the request, as in the logs.';

create index raw_callbacks_received_at_idx on raw_callbacks (received_at);
-- The "what went wrong" queries look only at the few refused requests.
create index raw_callbacks_refused_idx on raw_callbacks (received_at)
    where outcome in ('rejected', 'unauthorized', 'partial');

-- One row per status event (callout, alerting, answer, collectInfo, disconnect).
create table call_events (
    id bigint generated always as identity primary key,
    raw_callback_id uuid not null references raw_callbacks (id) deferrable initially deferred,
    fingerprint bytea not null,
    event_type text not null,
    session_id text not null,
    event_at timestamptz,
    caller text,
    called text,
    user_data text,
    party_type text,
    state_code integer,
    state_desc text,
    digit_info text,
    display_caller_num text,
    unparsed_times jsonb,
    extra jsonb,
    received_at timestamptz not null,
    constraint call_events_fingerprint_key unique (fingerprint),
    constraint call_events_event_type_check
        check (event_type in ('callout', 'alerting', 'answer', 'collectInfo', 'disconnect'))
);

comment on table call_events is 'Status events, one row each. A redelivered event is not stored twice (see fingerprint).';
comment on column call_events.raw_callback_id is 'The request that brought this event (raw_callbacks.id).';
comment on column call_events.fingerprint is 'Dedup key: SHA-256 of eventType and the canonical statusInfo (sorted keys). Same content = same event; the two legs of a click-to-call differ in numbers or time, so both are kept.';
comment on column call_events.event_type is 'callout, alerting, answer, collectInfo or disconnect.';
comment on column call_events.session_id is 'statusInfo.sessionId: the call, as returned by the API call that placed it and as in its CDR.';
comment on column call_events.event_at is 'statusInfo.timestamp read as UTC; null if absent or unreadable (then see unparsed_times).';
comment on column call_events.caller is 'statusInfo.caller, global format.';
comment on column call_events.called is 'statusInfo.called, global format.';
comment on column call_events.user_data is 'statusInfo.userData: echo of the userData given when the call was placed.';
comment on column call_events.party_type is 'statusInfo.partyType (click-to-call disconnect): who hung up first, as sent.';
comment on column call_events.state_code is 'statusInfo.stateCode (disconnect): hang-up cause, spec §3.1.';
comment on column call_events.state_desc is 'statusInfo.stateDesc (disconnect).';
comment on column call_events.digit_info is 'statusInfo.digitInfo (collectInfo): the keys pressed.';
comment on column call_events.display_caller_num is 'statusInfo.displayCallerNum (seen only in old demos).';
comment on column call_events.unparsed_times is 'Time fields that were present but not readable, as {"timestamp": "<raw>"}.';
comment on column call_events.extra is 'statusInfo fields the spec does not list, as received.';
comment on column call_events.received_at is 'When callhook received the event.';

create index call_events_session_idx on call_events (session_id, event_at);
create index call_events_event_at_idx on call_events (event_at);
create index call_events_caller_idx on call_events (caller);
create index call_events_called_idx on call_events (called);

-- One row per CDR (FeeInfo) of a fee list.
create table cdrs (
    id bigint generated always as identity primary key,
    raw_callback_id uuid not null references raw_callbacks (id) deferrable initially deferred,
    session_id text not null,
    dedup_key text not null,
    direction integer,
    sp_id text,
    app_key text,
    icid text,
    bind_num text,
    caller_num text,
    callee_num text,
    fwd_display_num text,
    fwd_dst_num text,
    fwd_start_time timestamptz,
    fwd_alerting_time timestamptz,
    fwd_answer_time timestamptz,
    call_end_time timestamptz,
    fwd_unasw_rsn integer,
    fail_time timestamptz,
    ul_fail_reason integer,
    sip_status_code integer,
    call_out_start_time timestamptz,
    call_out_alerting_time timestamptz,
    call_out_answer_time timestamptz,
    call_out_unasw_rsn integer,
    dyn_ivr_start_time timestamptz,
    dyn_ivr_path text,
    record_flag integer,
    record_start_time timestamptz,
    record_object_name text,
    record_bucket_name text,
    record_domain text,
    record_file_download_url text,
    tts_play_times integer,
    tts_trans_duration integer,
    service_type text,
    host_name text,
    user_data text,
    unparsed_times jsonb,
    extra jsonb,
    received_at timestamptz not null,
    constraint cdrs_session_dedup_key unique (session_id, dedup_key)
);

comment on table cdrs is 'Call detail records (fee pushes), one row per CDR. Re-pushes of the same CDR are not stored twice (see dedup_key).';
comment on column cdrs.raw_callback_id is 'The request that first brought this CDR (raw_callbacks.id).';
comment on column cdrs.session_id is 'sessionId: joins with call_events.session_id.';
comment on column cdrs.dedup_key is 'With session_id, the dedup key: icid:<icid> when the CDR has an icid, else sha256:<hex> of the canonical record.';
comment on column cdrs.direction is 'direction: 0 outbound, 1 call-back (click-to-call).';
comment on column cdrs.sp_id is 'spId: the customer''s cloud account.';
comment on column cdrs.app_key is 'appKey of the application.';
comment on column cdrs.icid is 'icid: the platform''s id of the call record.';
comment on column cdrs.bind_num is 'bindNum: the fixed-line number that originated the call.';
comment on column cdrs.caller_num is 'callerNum, global format.';
comment on column cdrs.callee_num is 'calleeNum, global format.';
comment on column cdrs.fwd_display_num is 'fwdDisplayNum (click-to-call): number shown on the forwarded leg.';
comment on column cdrs.fwd_dst_num is 'fwdDstNum (click-to-call): the B number.';
comment on column cdrs.fwd_start_time is 'fwdStartTime, UTC.';
comment on column cdrs.fwd_alerting_time is 'fwdAlertingTime, UTC.';
comment on column cdrs.fwd_answer_time is 'fwdAnswerTime, UTC. Talk time = call_end_time - fwd_answer_time.';
comment on column cdrs.call_end_time is 'callEndTime, UTC (also the platform''s batching key).';
comment on column cdrs.fwd_unasw_rsn is 'fwdUnaswRsn: Q.850 cause of the forwarded leg, spec §3.2.';
comment on column cdrs.fail_time is 'failTime, UTC.';
comment on column cdrs.ul_fail_reason is 'ulFailReason: release point, spec §3.3.';
comment on column cdrs.sip_status_code is 'sipStatusCode of the failed leg.';
comment on column cdrs.call_out_start_time is 'callOutStartTime, UTC: the platform-initiated leg.';
comment on column cdrs.call_out_alerting_time is 'callOutAlertingTime, UTC.';
comment on column cdrs.call_out_answer_time is 'callOutAnswerTime, UTC.';
comment on column cdrs.call_out_unasw_rsn is 'callOutUnaswRsn: Q.850 cause of the platform-initiated leg.';
comment on column cdrs.dyn_ivr_start_time is 'dynIVRStartTime, UTC (notification).';
comment on column cdrs.dyn_ivr_path is 'dynIVRPath: keys pressed in the dynamic IVR, e.g. 0-2-3.';
comment on column cdrs.record_flag is 'recordFlag: 1 recorded, 0 not.';
comment on column cdrs.record_start_time is 'recordStartTime, UTC.';
comment on column cdrs.record_object_name is 'recordObjectName: fileName for the recording download API.';
comment on column cdrs.record_bucket_name is 'recordBucketName.';
comment on column cdrs.record_domain is 'recordDomain: recordDomain for the recording download API.';
comment on column cdrs.record_file_download_url is 'recordFileDownloadUrl.';
comment on column cdrs.tts_play_times is 'ttsPlayTimes.';
comment on column cdrs.tts_trans_duration is 'ttsTransDuration, seconds.';
comment on column cdrs.service_type is 'serviceType: 002 voice callback (click-to-call), 001 voice playback.';
comment on column cdrs.host_name is 'hostName of the platform server that produced the CDR.';
comment on column cdrs.user_data is 'userData given when the call was placed.';
comment on column cdrs.unparsed_times is 'Time fields that were present but not readable, as {"<field>": "<raw>"}.';
comment on column cdrs.extra is 'FeeInfo fields the spec does not list, as received.';
comment on column cdrs.received_at is 'When callhook first received this CDR.';

create index cdrs_call_end_time_idx on cdrs (call_end_time);
create index cdrs_received_at_idx on cdrs (received_at);
create index cdrs_caller_num_idx on cdrs (caller_num);
create index cdrs_callee_num_idx on cdrs (callee_num);
create index cdrs_fwd_dst_num_idx on cdrs (fwd_dst_num);

-- Nonces of signed callbacks, remembered for the signature window so a replay is recognised.
create table callback_nonces (
    app_key text not null,
    nonce text not null,
    seen_at timestamptz not null,
    primary key (app_key, nonce)
);

comment on table callback_nonces is 'X-AKSK nonces seen inside the signature window; older ones are purged.';
create index callback_nonces_seen_at_idx on callback_nonces (seen_at);
