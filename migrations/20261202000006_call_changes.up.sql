-- The live stream of call changes (GET /v1/stream). Every writer of calls goes through
-- store::calls::refresh, whose upsert stamps the row with its transaction's id; readers deliver
-- the rows whose stamp lies below the horizon of their snapshot (its xmin, less other databases'
-- transactions), below which no transaction can still commit here, so a reader's position never
-- skips a change (docs/stream.md).

-- Nullable and without a default, so adding it rewrites nothing: rows written before it stay
-- null and are history to the stream, which starts from now.
alter table calls add column change_xid xid8;
comment on column calls.change_xid is 'The id of the transaction that last recomputed this row (pg_current_xact_id()), stamped by the upsert of store::calls::refresh; null for rows last written before 20261202000006. The live stream''s position: see docs/stream.md. A hand-made change reaches the stream only if it sets this too (change_xid = pg_current_xact_id()).';

-- The stream reads ranges of (change_xid, session_id) in byte order ("C"), which is also how
-- callhook compares positions in memory.
create index calls_change_idx on calls (change_xid, session_id collate "C") where change_xid is not null;
