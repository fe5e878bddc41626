-- 0015: model_logs keeps what a deployment's model printed, as its runtime shipped it (POST /api/v1/logs).
--
-- One row per log line, in one table with one index: the platform reads one deployment's lines by time
-- (`allora-bundle logs --since 10m`, the page's live tail: a range of (deployment_id, ts, id)) and deletes
-- by the same key (retention: lines older than the days setting, and beyond the per-deployment cap). No
-- primary key: nothing refers to a line, and a second B-tree would double what every insert writes.
-- `id` orders lines of the same millisecond and is the cursor of a tail, nothing else.
--
-- ts is the time the runtime logged the line (allora_gitops.untrusted.check_time: a time too far ahead of
-- the server's clock is recorded at its arrival). message is what was printed (or the runtime event's
-- fields as key=value), cleaned and bounded before it gets here; as every free text of the records, it
-- may not hold what looks like a wallet secret (writers redact with allora_redact_secrets first, this
-- CHECK is the last line of defence).
CREATE TABLE model_logs (
    id            bigint      GENERATED ALWAYS AS IDENTITY,
    deployment_id uuid        NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    ts            timestamptz NOT NULL,
    level         text        NOT NULL,
    event         text        NOT NULL,
    pod           text,
    message       text        NOT NULL,
    CONSTRAINT model_logs_level_valid CHECK (level IN ('debug', 'info', 'warning', 'error', 'critical')),
    CONSTRAINT model_logs_event_format CHECK (event ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT model_logs_pod_format CHECK (pod IS NULL OR pod ~ '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$'),
    CONSTRAINT model_logs_message_text CHECK (length(message) <= 8000 AND NOT allora_looks_like_secret(message))
);

CREATE INDEX model_logs_deployment_ts_idx ON model_logs (deployment_id, ts, id);
