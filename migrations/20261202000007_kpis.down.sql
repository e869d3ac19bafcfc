drop index calls_kpi_idx;
alter table calls drop column callback_delay_counts;
