drop table placed_calls;
