drop index calls_change_idx;
alter table calls drop column change_xid;
