drop index calls_missing_cdr_sort_idx;
drop index cdrs_sort_idx;
drop index calls_sort_idx;
