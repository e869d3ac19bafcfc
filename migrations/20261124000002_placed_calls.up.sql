-- What the outbound client asked the platform to do, one row per operation (not per retry),
-- written once its outcome is known. session_id joins a placed call with its callbacks
-- (call_events.session_id, cdrs.session_id).
create table placed_calls (
    id uuid primary key,
    operation text not null,
    app_key text not null,
    request jsonb not null,
    response jsonb,
    http_status smallint,
    result_code text,
    result_desc text,
    session_id text,
    user_data text,
    outcome text not null,
    error text,
    attempts smallint not null,
    requested_at timestamptz not null,
    answered_at timestamptz,
    constraint placed_calls_operation_check
        check (operation in ('click2call', 'notify', 'verify', 'stop', 'recording')),
    constraint placed_calls_outcome_check
        check (outcome in ('accepted', 'refused', 'failed', 'not_sent'))
);

comment on table placed_calls is 'Requests of the outbound client (click-to-call, notification, verification code, stop, recording link), one row per operation with its final outcome.';
comment on column placed_calls.id is 'UUIDv7: sorts by request time. Printed by the CLI ("recorded as placed_calls <id>").';
comment on column placed_calls.operation is 'click2call, notify (callnotify), verify (callVerify), stop (callStop) or recording (recording download link).';
comment on column placed_calls.app_key is 'The application the request was made for (X-AKSK/X-WSSE Username).';
comment on column placed_calls.request is 'The parameters as sent (JSON body, or the query of the recording request); statusUrl/feeUrl as sent, i.e. Base64. Never any secret or authentication header.';
comment on column placed_calls.response is 'The platform''s JSON answer as received; for a recording link {"location": "<url>"}. Null when no JSON answer came.';
comment on column placed_calls.http_status is 'HTTP status of the platform''s answer (of the last attempt); null when none came.';
comment on column placed_calls.result_code is 'resultcode of the answer: "0" success, otherwise see spec §2.7 (src/platform/result_codes.rs).';
comment on column placed_calls.result_desc is 'resultdesc of the answer; for 1010002 it names the bad parameter.';
comment on column placed_calls.session_id is 'The call: sessionId returned by click2call, notify and verify; the session stopped for stop. Joins with call_events.session_id and cdrs.session_id.';
comment on column placed_calls.user_data is 'userData sent with the call; the platform echoes it in every callback.';
comment on column placed_calls.outcome is 'accepted (resultcode 0, or the recording 301), refused (the platform answered another resultcode), failed (no usable answer and the request may have reached the platform: timeout, cut connection, non-JSON HTTP error; check the callbacks before trying again), not_sent (never reached the platform: invalid parameters, circuit breaker open, unknown app, or no connection after every attempt).';
comment on column placed_calls.error is 'For every outcome but accepted: the error as the client reports it.';
comment on column placed_calls.attempts is 'Requests sent or tried: more than 1 only after connection failures or flow control (1010010); 0 when not even tried.';
comment on column placed_calls.requested_at is 'When the operation was asked for (UTC).';
comment on column placed_calls.answered_at is 'When the final answer arrived or the operation gave up (UTC).';

create index placed_calls_session_id_idx on placed_calls (session_id);
create index placed_calls_requested_at_idx on placed_calls (requested_at);
