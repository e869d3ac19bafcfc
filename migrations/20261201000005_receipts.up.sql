-- Durable receipt first, projection after. A raw_callbacks row is now the receipt: it is what
-- callhook acknowledges, written alone in the acknowledged path. call_events, cdrs, calls and
-- the receipt's final outcome are derived from it afterwards by the projector, and can be derived
-- again from it (callhook reproject).

alter table raw_callbacks drop constraint raw_callbacks_outcome_check;
alter table raw_callbacks add constraint raw_callbacks_outcome_check
    check (outcome in ('received', 'stored', 'duplicate', 'partial', 'rejected', 'unauthorized',
                       'unrecognized'));
comment on column raw_callbacks.outcome is 'received (acknowledged, rows not derived yet), stored (new rows written), duplicate (all already stored), partial (some CDRs refused, the rest stored), rejected (bad input, nothing stored), unauthorized (signature refused in enforce mode), unrecognized (an eventType this version does not know: answered 200, kept for reprocessing).';

alter table raw_callbacks
    add column nonce text,
    add column projected_at timestamptz;
comment on column raw_callbacks.nonce is 'X-AKSK Nonce as sent, when the header could be read. Unique per app among valid signatures: a second valid use is a replay. Part of a signed status event''s identity (see call_events.fingerprint).';
comment on column raw_callbacks.projected_at is 'When the projector derived this receipt''s rows and outcome; null while outcome is received, and for requests refused when they arrived.';

-- Replays are decided by this index inside the receipt's own INSERT (ON CONFLICT DO NOTHING).
create unique index raw_callbacks_nonce_key on raw_callbacks (app_key, nonce)
    where signature_verdict = 'valid';
-- The projector's queue: the receipts not projected yet, oldest first.
create index raw_callbacks_unprojected_idx on raw_callbacks (id) where outcome = 'received';

drop index raw_callbacks_refused_idx;
create index raw_callbacks_refused_idx on raw_callbacks (received_at)
    where outcome in ('rejected', 'unauthorized', 'partial', 'unrecognized');

-- Rows stored before this migration were derived in the request's own transaction.
update raw_callbacks set projected_at = received_at where outcome in ('stored', 'duplicate', 'partial');

comment on column call_events.fingerprint is 'Identity of a status event: SHA-256 of eventType and the canonical statusInfo (sorted keys), and of the push''s X-AKSK nonce when it carried one. A replay of one push (same nonce) is a duplicate; two legs whose bodies are byte-identical are two events, told apart by their nonces. Unsigned pushes have content alone: identical ones are one event.';

-- callback_nonces is no longer written (replays are decided by raw_callbacks_nonce_key). It is
-- dropped by a later migration, once no replica of the previous version can be running.
comment on table callback_nonces is 'No longer used since 20261201000005 (see raw_callbacks.nonce); kept for replicas of the previous version during an upgrade.';
