-- The call log: one row per call (sessionId), derived from everything stored about it.
create table calls (
    session_id text primary key,
    scenario text not null,
    app_key text,
    caller text,
    callee text,
    display_number text,
    user_data text,
    placed_call_id uuid,
    a_callout_at timestamptz,
    a_alerting_at timestamptz,
    a_answer_at timestamptz,
    a_disconnect_at timestamptz,
    b_callout_at timestamptz,
    b_alerting_at timestamptz,
    b_answer_at timestamptz,
    b_disconnect_at timestamptz,
    digits text,
    started_at timestamptz,
    ended_at timestamptz,
    ring_seconds integer,
    talk_seconds integer,
    outcome text not null,
    state_code integer,
    state_meaning text,
    party_type text,
    q850_cause integer,
    q850_meaning text,
    ul_fail_reason integer,
    ul_fail_meaning text,
    sip_status_code integer,
    record_flag integer,
    record_object_name text,
    record_domain text,
    record_file_download_url text,
    has_cdr boolean not null,
    events integer not null,
    last_callback_at timestamptz not null,
    updated_at timestamptz not null,
    constraint calls_scenario_check check (scenario in ('click2call', 'notify', 'verify', 'playback', 'unknown')),
    constraint calls_outcome_check
        check (outcome in ('in_progress', 'answered', 'no_answer', 'busy', 'rejected', 'caller_hung_up', 'failed'))
);

comment on table calls is 'One row per call (sessionId), recomputed in the same transaction as every callback or placed call that concerns it, from all that is stored about it; so the result does not depend on the order callbacks arrive in.';
comment on column calls.session_id is 'The platform''s sessionId; joins call_events, cdrs and placed_calls.';
comment on column calls.scenario is 'click2call, notify (voice notification), verify (verification code), playback (a CDR with serviceType 001, which notify and verify share, for a call we did not place), or unknown (not placed by us, no CDR yet: click2call if two numbers were called). From placed_calls.operation, else the CDR''s serviceType (002 = click2call).';
comment on column calls.app_key is 'The application: from the placed call or the CDR.';
comment on column calls.caller is 'A: the party called first (click-to-call callerNbr; the user called for notify/verify).';
comment on column calls.callee is 'B (click-to-call calleeNbr, the CDR''s fwdDstNum); null for notify/verify.';
comment on column calls.display_number is 'The number shown (displayNbr / the CDR''s callerNum or bindNum).';
comment on column calls.user_data is 'userData of the call.';
comment on column calls.placed_call_id is 'placed_calls.id when we placed the call.';
comment on column calls.a_callout_at is 'Leg A (platform calls A): callout event time. Legs are told apart by the called number (B is the known B number, or the second number called).';
comment on column calls.a_alerting_at is 'Leg A: alerting (ringing) event time.';
comment on column calls.a_answer_at is 'Leg A: answer event time.';
comment on column calls.a_disconnect_at is 'Leg A: disconnect event time.';
comment on column calls.b_callout_at is 'Leg B (click-to-call only): callout event time.';
comment on column calls.b_alerting_at is 'Leg B: alerting event time.';
comment on column calls.b_answer_at is 'Leg B: answer event time.';
comment on column calls.b_disconnect_at is 'Leg B: disconnect event time.';
comment on column calls.digits is 'Keys pressed (collectInfo digitInfo), notify only.';
comment on column calls.started_at is 'First known time of the call: leg A callout, else the CDR''s callOutStartTime, else the earliest event.';
comment on column calls.ended_at is 'The CDR''s callEndTime, else the last disconnect event.';
comment on column calls.ring_seconds is 'Ringing of the party that decides the outcome (B for click-to-call, A otherwise): alerting until answer, or until the end if unanswered.';
comment on column calls.talk_seconds is 'Spec: callEndTime - answer time of that party (B for click-to-call: fwdAnswerTime); from events when no CDR yet. 0 when unanswered.';
comment on column calls.outcome is 'in_progress (no end yet), answered, no_answer, busy, rejected, caller_hung_up (A released before B answered), failed (anything else that did not connect).';
comment on column calls.state_code is 'Hang-up cause (stateCode) of the last disconnect event; see state_codes.';
comment on column calls.state_meaning is 'Meaning of state_code (spec §3.1), or null if undocumented.';
comment on column calls.party_type is 'partyType of the last disconnect (who hung up first), as sent.';
comment on column calls.q850_cause is 'Q.850 cause of the failed leg (CDR fwdUnaswRsn for click-to-call B, else callOutUnaswRsn); 0 = none. See q850_causes.';
comment on column calls.q850_meaning is 'ITU-T meaning of q850_cause.';
comment on column calls.ul_fail_reason is 'Release point (CDR ulFailReason); see ul_fail_reasons.';
comment on column calls.ul_fail_meaning is 'Meaning of ul_fail_reason (spec §3.3).';
comment on column calls.sip_status_code is 'SIP status of the failed leg (CDR sipStatusCode).';
comment on column calls.record_flag is 'CDR recordFlag: 1 recorded.';
comment on column calls.record_object_name is 'CDR recordObjectName: fileName for callhook recording.';
comment on column calls.record_domain is 'CDR recordDomain.';
comment on column calls.record_file_download_url is 'CDR recordFileDownloadUrl.';
comment on column calls.has_cdr is 'Whether the CDR has arrived.';
comment on column calls.events is 'Number of status events stored for the call.';
comment on column calls.last_callback_at is 'When callhook last received something about the call.';
comment on column calls.updated_at is 'When this row was last recomputed.';

create index calls_started_at_idx on calls (started_at desc, session_id desc);
create index calls_caller_idx on calls (caller);
create index calls_callee_idx on calls (callee);
create index calls_display_number_idx on calls (display_number);
create index calls_user_data_idx on calls (user_data);
create index calls_outcome_idx on calls (outcome, started_at desc);
create index calls_missing_cdr_idx on calls (ended_at) where not has_cdr;

-- Code tables (spec §3, §2.7). The source of truth is src/platform/codes.rs and
-- src/platform/result_codes.rs; callhook rewrites these tables from them on every start, so
-- they are here only for people who query the database directly.
create table state_codes (
    code integer primary key,
    meaning text not null
);
comment on table state_codes is 'Hang-up causes (stateCode, spec §3.1). Rewritten from the code on start.';

create table q850_causes (
    code integer primary key,
    label_zh text not null,
    meaning text not null
);
comment on table q850_causes is 'Q.850 causes as the platform documents them (fwdUnaswRsn, callOutUnaswRsn; spec §3.2): the doc''s Chinese label and the ITU-T meaning. Rewritten from the code on start.';

create table ul_fail_reasons (
    code_from integer primary key,
    code_to integer not null,
    meaning text not null
);
comment on table ul_fail_reasons is 'Release points (ulFailReason, spec §3.3), as ranges: a code c matches code_from <= c <= code_to (narrowest range first). Rewritten from the code on start.';

create table result_codes (
    code text primary key,
    http_status smallint,
    text text not null,
    meaning text not null
);
comment on table result_codes is 'Result codes of the platform''s APIs (resultcode, spec §2.7). Rewritten from the code on start.';

-- Reprocessing of refused callbacks (through the current parser, after a fix).
alter table raw_callbacks
    add column reprocessed_at timestamptz,
    add column reprocess_outcome text,
    add column reprocess_error jsonb;
comment on column raw_callbacks.reprocessed_at is 'When this refused callback was last run through the parser again (callhook reprocess, POST /v1/rejected/.../reprocess).';
comment on column raw_callbacks.reprocess_outcome is 'What reprocessing came to: stored, duplicate, partial, or rejected (still unreadable; see reprocess_error).';
comment on column raw_callbacks.reprocess_error is 'The error of the last reprocessing, when it was still refused.';
