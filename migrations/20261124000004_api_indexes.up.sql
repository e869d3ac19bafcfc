-- Indexes for the read API (/v1). Its lists are keyset-paginated newest first on a sort key that
-- is never null (src/store/read.rs explains the choice), so a page is one range scan of these.
-- (GET /v1/rejected reads the few refused callbacks through raw_callbacks_refused_idx.)

-- Calls: started_at, or, when no time of start could be read, when callhook last heard of the call.
create index calls_sort_idx on calls ((coalesce(started_at, last_callback_at)) desc, session_id desc);

-- CDRs: callEndTime, or, when it could not be read, when the CDR arrived.
create index cdrs_sort_idx on cdrs ((coalesce(call_end_time, received_at)) desc, id desc);

-- GET /v1/gaps: the same order over the calls without a CDR only (in progress, or overdue), so
-- finding the overdue ones never walks the calls that have theirs.
create index calls_missing_cdr_sort_idx on calls ((coalesce(started_at, last_callback_at)) desc, session_id desc)
    where not has_cdr;
