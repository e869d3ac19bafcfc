alter table placed_calls drop constraint placed_calls_outcome_check;
update placed_calls set outcome = 'refused' where outcome = 'declined';
alter table placed_calls add constraint placed_calls_outcome_check
    check (outcome in ('accepted', 'refused', 'failed', 'not_sent'));

comment on column placed_calls.outcome is 'accepted (resultcode 0, or the recording 301), refused (the platform answered another resultcode), failed (no usable answer and the request may have reached the platform: timeout, cut connection, non-JSON HTTP error; check the callbacks before trying again), not_sent (never reached the platform: invalid parameters, circuit breaker open, unknown app, or no connection after every attempt).';
comment on column placed_calls.result_code is 'resultcode of the answer: "0" success, otherwise see spec §2.7 (src/platform/result_codes.rs).';
