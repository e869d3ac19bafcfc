-- Going back to deriving rows in the request's transaction: every receipt must be projected.
do $$
begin
    if exists (select 1 from raw_callbacks where outcome = 'received') then
        raise exception 'raw_callbacks holds receipts not projected yet; let callhook project them (see README, "receipts not yet projected") before migrating down';
    end if;
end $$;

comment on table callback_nonces is 'X-AKSK nonces seen inside the signature window; older ones are purged.';
comment on column call_events.fingerprint is 'Dedup key: SHA-256 of eventType and the canonical statusInfo (sorted keys). Same content = same event; the two legs of a click-to-call differ in numbers or time, so both are kept.';

drop index raw_callbacks_refused_idx;
create index raw_callbacks_refused_idx on raw_callbacks (received_at)
    where outcome in ('rejected', 'unauthorized', 'partial');
drop index raw_callbacks_unprojected_idx;
drop index raw_callbacks_nonce_key;
alter table raw_callbacks drop column projected_at, drop column nonce;

-- The previous version has no "unrecognized": such requests were refused as bad input.
update raw_callbacks set outcome = 'rejected' where outcome = 'unrecognized';
alter table raw_callbacks drop constraint raw_callbacks_outcome_check;
alter table raw_callbacks add constraint raw_callbacks_outcome_check
    check (outcome in ('stored', 'duplicate', 'partial', 'rejected', 'unauthorized'));
comment on column raw_callbacks.outcome is 'stored (new rows written), duplicate (all already stored), partial (some CDRs refused, the rest stored), rejected (bad input, nothing stored), unauthorized (signature refused in enforce mode).';
