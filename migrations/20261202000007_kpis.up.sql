-- The voice KPIs (GET /v1/kpis, src/store/kpis.rs; docs/kpis.md).

-- Callback delay is a figure of status events, but a range's KPIs are asked of its calls: each
-- row keeps its events' counts by delay, recomputed with the row, so a range is summed from its
-- calls alone instead of joining every event of the range (six or so per call).
alter table calls add column callback_delay_counts integer[];
comment on column calls.callback_delay_counts is 'The call''s status events by callback delay (received_at - event_at, the platform''s timestamp to our receipt): counts per bucket of upper bounds 0, 1, 2, 5, 10, 30, 60, 300, 1800, 3600 s (src/kpis.rs CALLBACK_DELAY_BUCKETS; a value v is in the first bucket whose bound is >= v), the last element those above 3600 s. Null when no event has a readable timestamp, and for calls last recomputed before this column existed (callhook reproject recomputes them).';

-- The same counts one column each: summing array elements costs PostgreSQL a copy of the
-- array per element read (measured: 1.6 s more per million calls), summing columns nothing.
alter table calls
    add column callback_delays_le_0s integer generated always as (callback_delay_counts[1]) stored,
    add column callback_delays_le_1s integer generated always as (callback_delay_counts[2]) stored,
    add column callback_delays_le_2s integer generated always as (callback_delay_counts[3]) stored,
    add column callback_delays_le_5s integer generated always as (callback_delay_counts[4]) stored,
    add column callback_delays_le_10s integer generated always as (callback_delay_counts[5]) stored,
    add column callback_delays_le_30s integer generated always as (callback_delay_counts[6]) stored,
    add column callback_delays_le_60s integer generated always as (callback_delay_counts[7]) stored,
    add column callback_delays_le_300s integer generated always as (callback_delay_counts[8]) stored,
    add column callback_delays_le_1800s integer generated always as (callback_delay_counts[9]) stored,
    add column callback_delays_le_3600s integer generated always as (callback_delay_counts[10]) stored,
    add column callback_delays_over_3600s integer generated always as (callback_delay_counts[11]) stored;
comment on column calls.callback_delays_le_0s is 'How many of the call''s status events reached us at most 0 s after their platform timestamp (0 and less: the platform''s clock is ahead of ours): element 1 of callback_delay_counts.';
comment on column calls.callback_delays_le_1s is 'How many of the call''s status events reached us more than 0 s and at most 1 s after: element 2 of callback_delay_counts.';
comment on column calls.callback_delays_le_2s is 'How many of the call''s status events reached us more than 1 s and at most 2 s after: element 3 of callback_delay_counts.';
comment on column calls.callback_delays_le_5s is 'How many of the call''s status events reached us more than 2 s and at most 5 s after: element 4 of callback_delay_counts.';
comment on column calls.callback_delays_le_10s is 'How many of the call''s status events reached us more than 5 s and at most 10 s after: element 5 of callback_delay_counts.';
comment on column calls.callback_delays_le_30s is 'How many of the call''s status events reached us more than 10 s and at most 30 s after: element 6 of callback_delay_counts.';
comment on column calls.callback_delays_le_60s is 'How many of the call''s status events reached us more than 30 s and at most 60 s after: element 7 of callback_delay_counts.';
comment on column calls.callback_delays_le_300s is 'How many of the call''s status events reached us more than 60 s and at most 300 s after: element 8 of callback_delay_counts.';
comment on column calls.callback_delays_le_1800s is 'How many of the call''s status events reached us more than 300 s and at most 1800 s after: element 9 of callback_delay_counts.';
comment on column calls.callback_delays_le_3600s is 'How many of the call''s status events reached us more than 1800 s and at most 3600 s after: element 10 of callback_delay_counts.';
comment on column calls.callback_delays_over_3600s is 'How many of the call''s status events reached us more than 3600 s after: element 11 of callback_delay_counts.';

-- A KPI query reads every call that started in a range of up to kpis.max_range_days, a million
-- rows and more. This index holds every column it uses, so it is an index-only range scan
-- rather than a read of the wide calls rows (measured in BENCHMARKS.md).
-- Built in the migration's transaction: writes to calls wait meanwhile (seconds per million
-- calls), which delays projection only; callbacks are still acknowledged, and the projector
-- catches up afterwards.
create index calls_kpi_idx on calls (started_at)
    include (app_key, scenario, outcome, ring_seconds, talk_seconds, state_code, a_callout_at,
             a_alerting_at, callback_delays_le_0s, callback_delays_le_1s, callback_delays_le_2s, callback_delays_le_5s, callback_delays_le_10s, callback_delays_le_30s, callback_delays_le_60s, callback_delays_le_300s, callback_delays_le_1800s, callback_delays_le_3600s, callback_delays_over_3600s);

-- The KPI query groups by hour. Without statistics on that expression the planner takes every
-- started_at for an hour of its own, expects a million groups, and sorts instead of hashing.
create statistics calls_started_hour_stats on (date_bin('1 hour', started_at, timestamptz '2000-01-01 00:00:00+00')) from calls;
