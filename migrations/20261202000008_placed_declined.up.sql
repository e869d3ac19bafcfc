-- A placed call the platform answered with a resultcode other than 0 was `refused`, the word
-- that also names the callbacks callhook itself refuses. It is `declined` now: the platform
-- answered and declined the request.
--
-- Not expand-then-contract: a `callhook call` of the previous version still running after this
-- migration cannot record a declined request (the check fails; its error is logged and the
-- operation's own result is unchanged). Upgrade the CLI with the service.
alter table placed_calls drop constraint placed_calls_outcome_check;
update placed_calls set outcome = 'declined' where outcome = 'refused';
alter table placed_calls add constraint placed_calls_outcome_check
    check (outcome in ('accepted', 'declined', 'failed', 'not_sent'));

comment on column placed_calls.outcome is 'accepted (resultcode 0, or the recording 301), declined (the platform answered another resultcode), failed (no usable answer and the request may have reached the platform: timeout, cut connection, non-JSON HTTP error; check the callbacks before trying again), not_sent (never reached the platform: invalid parameters, circuit breaker open, unknown app, or no connection after every attempt).';
comment on column placed_calls.result_code is 'resultcode of the answer: "0" success, otherwise see spec §2.7 (crates/platform/src/result_codes.rs).';
