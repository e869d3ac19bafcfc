-- The voice KPIs (GET /v1/kpis, src/store/kpis.rs; docs/kpis.md).

-- Callback delay is a figure of status events, but a range's KPIs are asked of its calls: each
-- row keeps its events' counts by delay, recomputed with the row, so a range is summed from its
-- calls alone instead of joining every event of the range (six or so per call).
alter table calls add column callback_delay_counts integer[];
comment on column calls.callback_delay_counts is 'The call''s status events by callback delay (received_at - event_at, the platform''s timestamp to our receipt): counts per bucket of upper bounds 0, 1, 2, 5, 10, 30, 60, 300, 1800, 3600 s (src/kpis.rs CALLBACK_DELAY_BUCKETS; a value v is in the first bucket whose bound is >= v), the last element those above 3600 s. Null when no event has a readable timestamp, and for calls last recomputed before this column existed (callhook reproject recomputes them).';

-- A KPI query reads every call that started in a range of up to kpis.max_range_days, a million
-- rows and more. This index holds every column it uses, so it is an index-only range scan
-- rather than a read of the wide calls rows (measured in BENCHMARKS.md).
-- Built in the migration's transaction: writes to calls wait meanwhile (seconds per million
-- calls), which delays projection only; callbacks are still acknowledged, and the projector
-- catches up afterwards.
create index calls_kpi_idx on calls (started_at)
    include (app_key, scenario, outcome, ring_seconds, talk_seconds, state_code, a_callout_at,
             a_alerting_at, callback_delay_counts);
