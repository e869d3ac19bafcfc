drop table callback_nonces;
drop table cdrs;
drop table call_events;
drop table raw_callbacks;
