-- Every projection rewrites a call's row, and since its change stamp (change_xid) is indexed no
-- rewrite is HOT: each one adds an entry to every index of calls. Three of them only repeat what
-- later indexes give:
--   calls_started_at_idx   started_at ranges, either direction: calls_kpi_idx (started_at),
--                          which also carries outcome, app_key and scenario for index-only scans;
--                          the API's lists: calls_sort_idx
--   calls_outcome_idx      outcome within a time range: calls_kpi_idx (outcome is included)
--   calls_missing_cdr_idx  calls without a CDR: calls_missing_cdr_sort_idx (same rows)
drop index if exists calls_started_at_idx;
drop index if exists calls_outcome_idx;
drop index if exists calls_missing_cdr_idx;
