create index if not exists calls_started_at_idx on calls (started_at desc, session_id desc);
create index if not exists calls_outcome_idx on calls (outcome, started_at desc);
create index if not exists calls_missing_cdr_idx on calls (ended_at) where not has_cdr;
