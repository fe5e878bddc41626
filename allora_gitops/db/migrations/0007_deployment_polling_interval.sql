-- 0007: the polling interval a deployment runs with (ALLORA_POLLING_INTERVAL in its overlay), in seconds.
--
-- The lifecycle (allora_gitops/lifecycle.py) judges "running" and "active" by how many polling intervals
-- have passed since the last result. The bundle's model.yaml (allora.polling_interval, default 120) holds
-- the model's own value, but `publish --polling-interval` and the API's `polling_interval` override it in
-- the overlay only, which a reader of the records (the API, `status` without --repo) does not open.
-- NULL: not recorded (rows from before 0007); readers fall back to the bundle manifest's value.
ALTER TABLE deployments ADD COLUMN polling_interval integer;
ALTER TABLE deployments ADD CONSTRAINT deployments_polling_interval_positive CHECK (polling_interval IS NULL OR polling_interval > 0);
