-- 0016: submission_results is partitioned by the time of each result (RANGE on created_at).
--
-- A platform keeps months of results from thousands of workers; retention used to DELETE them row by row and
-- every insert maintained four indexes. From here:
--   * one partition per period (daily unless $ALLORA_RESULTS_PARTITION says weekly), named
--     submission_results_pYYYYMMDD after its first day (UTC); `allora-gitops db upgrade` and `serve` create them
--     ahead (allora_gitops/db/result_partitions.py); retention (`results prune`) DROPs whole partitions;
--   * submission_results_default takes a row no partition covers (a log far in the past, a clock far ahead),
--     so an insert never fails for lack of a partition; creating the partition later moves such rows into it;
--   * two indexes instead of four: the key (deployment_id, nonce, kind, created_at) and the window index of 0006.
--     The id primary key (never looked up) and the BRIN on created_at (partition pruning does its work) go.
--
-- A unique constraint of a partitioned table must hold the partition key, so the database alone can no longer
-- say "one row per (deployment, nonce, kind)" across periods: the key above only refuses the same result at the
-- same time. Writers (allora_gitops/db/results.py) keep the first report of a (deployment, nonce, kind) by taking
-- the deployment's advisory lock (hashtextextended('results:' || id, 0)) for the transaction and inserting only
-- keys that no partition holds yet (NOT EXISTS over the key's index), so a re-sent batch is stored once even
-- when its times differ.
--
-- The secret CHECKs test length(…) >= 47 first (allora_looks_like_secret answers false below that): the function has
-- a pinned search_path (0002), which keeps PostgreSQL from inlining it, so each call costs a SQL-function
-- invocation; most results (numbers, short messages) now never make one. Same answers for every text.
--
-- Existing rows move: one partition per UTC day that holds results, plus the 30 days before today and the
-- 7 after (the default retention and look-ahead), then the rows are copied and the old table dropped.
-- Nothing else references submission_results (no view, trigger or foreign key points at it).

ALTER TABLE submission_results RENAME TO submission_results_0015;
-- index names are schema-wide: free them for the new table
ALTER INDEX submission_results_pkey RENAME TO submission_results_0015_pkey;
ALTER INDEX submission_results_deployment_nonce_kind_key RENAME TO submission_results_0015_key;
ALTER INDEX submission_results_window_idx RENAME TO submission_results_0015_window_idx;
ALTER INDEX submission_results_created_brin RENAME TO submission_results_0015_brin;

CREATE TABLE submission_results (
    id              uuid             NOT NULL DEFAULT gen_random_uuid(),
    deployment_id   uuid             NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    nonce           bigint           NOT NULL,
    prediction      text,
    tx_hash         text,
    status          text             NOT NULL,
    error_message   text,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    kind            text             NOT NULL DEFAULT 'submission',
    reason          text,
    error_type      text,
    error_where     text,
    latency_ms      double precision,
    gas_used        bigint,
    fee             text,
    CONSTRAINT submission_results_nonce_nonnegative CHECK (nonce >= 0),
    CONSTRAINT submission_results_status_valid CHECK (status IN ('success', 'error', 'timeout')),
    CONSTRAINT submission_results_success_has_prediction CHECK (status <> 'success' OR prediction IS NOT NULL),
    CONSTRAINT submission_results_failure_has_error CHECK (status NOT IN ('error', 'timeout') OR error_message IS NOT NULL),
    CONSTRAINT submission_results_prediction_text CHECK (
        prediction IS NULL OR (length(prediction) <= 10000 AND NOT (length(prediction) >= 47 AND allora_looks_like_secret(prediction)))),
    CONSTRAINT submission_results_tx_hash_format CHECK (tx_hash IS NULL OR tx_hash ~ '^[0-9A-F]{64}$'),
    CONSTRAINT submission_results_error_message_text CHECK (
        error_message IS NULL OR (length(error_message) <= 4000 AND NOT (length(error_message) >= 47 AND allora_looks_like_secret(error_message)))),
    CONSTRAINT submission_results_kind_valid CHECK (kind IN ('prediction', 'submission')),
    CONSTRAINT submission_results_reason_format CHECK (reason IS NULL OR reason ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT submission_results_error_type_format CHECK (
        error_type IS NULL OR (error_type ~ '^[A-Za-z_][A-Za-z0-9_.]{0,199}$' AND NOT (length(error_type) >= 47 AND allora_looks_like_secret(error_type)))),
    CONSTRAINT submission_results_error_where_text CHECK (
        error_where IS NULL OR (length(error_where) BETWEEN 1 AND 1000 AND NOT (length(error_where) >= 47 AND allora_looks_like_secret(error_where)))),
    CONSTRAINT submission_results_latency_valid CHECK (
        latency_ms IS NULL OR (latency_ms >= 0 AND latency_ms < 86400000)),
    CONSTRAINT submission_results_gas_used_nonnegative CHECK (gas_used IS NULL OR gas_used >= 0),
    CONSTRAINT submission_results_fee_format CHECK (
        fee IS NULL OR (
            fee ~ '^[0-9]+[a-zA-Z][a-zA-Z0-9/:._-]{2,127}(,[0-9]+[a-zA-Z][a-zA-Z0-9/:._-]{2,127})*$'
            AND length(fee) <= 1000)),
    -- the writers' "already recorded?" probe (deployment, nonce, kind) is this index's prefix
    CONSTRAINT submission_results_pkey PRIMARY KEY (deployment_id, nonce, kind, created_at)
) PARTITION BY RANGE (created_at);
-- last N, 1 h / 24 h / 7 d windows, the deployments page's newest result and 24 h figures, the timeline:
-- one deployment's results by time, the aggregated columns included (index-only)
CREATE INDEX submission_results_window_idx
    ON submission_results (deployment_id, created_at DESC) INCLUDE (kind, status, latency_ms);

DO $do$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM submission_results_0015
        UNION
        SELECT generate_series((now() AT TIME ZONE 'UTC')::date - 30, (now() AT TIME ZONE 'UTC')::date + 7, interval '1 day')::date
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF submission_results FOR VALUES FROM (%L) TO (%L)',
            'submission_results_p' || to_char(day, 'YYYYMMDD'), day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
    END LOOP;
END
$do$;
CREATE TABLE submission_results_default PARTITION OF submission_results DEFAULT;

INSERT INTO submission_results (id, deployment_id, nonce, prediction, tx_hash, status, error_message, created_at, kind,
                                reason, error_type, error_where, latency_ms, gas_used, fee)
SELECT id, deployment_id, nonce, prediction, tx_hash, status, error_message, created_at, kind,
       reason, error_type, error_where, latency_ms, gas_used, fee
FROM submission_results_0015;

DROP TABLE submission_results_0015;
