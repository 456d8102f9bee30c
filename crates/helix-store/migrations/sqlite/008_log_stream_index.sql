-- A service's and a process's lines in time order: the Loki selectors (`service_name`,
-- `helix_process_name`) and the live tail read along these instead of walking every line of
-- the window through `logs_time` (storage.md "logs"). Keyed by a handful of values and the
-- time, so new lines append to them. The rowid is the last key column, as in `logs_time`.
CREATE INDEX logs_service_time ON logs (service_name, timestamp_ns);
CREATE INDEX logs_process_time ON logs (process_name, timestamp_ns);
