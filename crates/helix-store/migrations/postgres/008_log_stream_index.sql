-- A service's and a process's lines in (timestamp, id) order: the Loki selectors
-- (`service_name`, `helix_process_name`) and the live tail read along these instead of
-- walking every line of the window through `logs_time_id` (storage.md "logs").
CREATE INDEX IF NOT EXISTS logs_service_time_id ON logs (service_name, timestamp_ns, id);
CREATE INDEX IF NOT EXISTS logs_process_time_id ON logs (process_name, timestamp_ns, id);
