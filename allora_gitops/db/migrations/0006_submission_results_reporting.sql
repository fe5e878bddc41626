-- 0006: submission_results carries what the runtime reports for each nonce, once.
--
-- One row per (deployment, nonce, kind): the runtime reports a *prediction* (its model's value or
-- refusal) and, on a chain, the *submission* of that value (tx hash, gas, fee, or the failure).
-- Re-reporting the same result (a retried batch, an imported log read twice) adds nothing:
-- writers use INSERT … ON CONFLICT DO NOTHING on that key.
--
-- created_at is when the runtime observed the result (its log line's `ts`), not when the row was
-- written, so an imported log lands in the right 1 h / 24 h / 7 d windows and retention prunes by
-- the age of the result itself.
--
-- The free-text columns keep 0001's rule: nothing that looks like a wallet secret.

-- The secret test runs on every free-text column of every row (CHECK constraints, redaction), and
-- made a bulk import CPU-bound: allora_has_hex_key rewrites the text before its regex, allora_bip39_run
-- is plpgsql with a jsonb lookup per word. Both now sit behind necessary conditions that cost next to
-- nothing: a secret is at least 47 characters long (a key is 64 hex digits; a mnemonic is 12 words of
-- at least 3 letters, 11 separators), a key needs a 64-hex run, a mnemonic at least 12 letter runs in
-- allora_bip39_run's own tokenisation (lower(), split on [^a-z]+). Numbers, short messages and
-- file:line never reach the slow part; every text gets the same answer as before. Writers of many
-- rows redact with `CASE WHEN allora_may_hold_secret(t) THEN allora_redact_secrets(t) ELSE t END`.
CREATE FUNCTION allora_may_hold_secret(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT length(t) >= 47 AND (t ~ '[0-9A-Fa-f]{64}' OR lower(t) ~ '([a-z]+[^a-z]+){11}[a-z]')
$fn$;

CREATE OR REPLACE FUNCTION allora_looks_like_secret(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT CASE
    WHEN length(t) < 47 OR t IS NULL THEN false
    ELSE (t ~ '[0-9A-Fa-f]{64}' AND allora_has_hex_key(t))
      OR (lower(t) ~ '([a-z]+[^a-z]+){11}[a-z]' AND allora_bip39_run(t) >= 12)
END
$fn$;

-- Like every allora_* function (0002), these two find what they call in their own schema whatever the
-- caller's search_path (pg_restore runs with an empty one); CREATE OR REPLACE drops the pin 0002 set.
DO $do$
BEGIN
    EXECUTE format('ALTER FUNCTION allora_may_hold_secret(text) SET search_path = %I, pg_catalog', current_schema());
    EXECUTE format('ALTER FUNCTION allora_looks_like_secret(text) SET search_path = %I, pg_catalog', current_schema());
END
$do$;

-- Earlier rows were all submissions; the key below needs them unique first (keep the newest).
DELETE FROM submission_results r
USING submission_results newer
WHERE newer.deployment_id = r.deployment_id AND newer.nonce = r.nonce
  AND (newer.created_at, newer.id) > (r.created_at, r.id);

ALTER TABLE submission_results
    ADD COLUMN kind        text             NOT NULL DEFAULT 'submission',
    ADD COLUMN reason      text,
    ADD COLUMN error_type  text,
    ADD COLUMN error_where text,
    ADD COLUMN latency_ms  double precision,
    ADD COLUMN gas_used    bigint,
    ADD COLUMN fee         text,
    ADD CONSTRAINT submission_results_kind_valid CHECK (kind IN ('prediction', 'submission')),
    -- the runtime's refusal reason (exception, timeout, invalid_value, stopping) or a submission's (tx_failed, …)
    ADD CONSTRAINT submission_results_reason_format CHECK (reason IS NULL OR reason ~ '^[a-z][a-z0-9_]{0,63}$'),
    -- a Python exception class name, possibly dotted (module.Class)
    ADD CONSTRAINT submission_results_error_type_format CHECK (
        error_type IS NULL OR (error_type ~ '^[A-Za-z_][A-Za-z0-9_.]{0,199}$' AND NOT allora_looks_like_secret(error_type))),
    -- the user-code frame that raised: "model.py:12 in predict"
    ADD CONSTRAINT submission_results_error_where_text CHECK (
        error_where IS NULL OR (length(error_where) BETWEEN 1 AND 1000 AND NOT allora_looks_like_secret(error_where))),
    ADD CONSTRAINT submission_results_latency_valid CHECK (
        latency_ms IS NULL OR (latency_ms >= 0 AND latency_ms < 86400000)),
    ADD CONSTRAINT submission_results_gas_used_nonnegative CHECK (gas_used IS NULL OR gas_used >= 0),
    -- Cosmos SDK coins: "1250uallo" or "1250uallo,3ibc/…" (sdk.Coins.String())
    ADD CONSTRAINT submission_results_fee_format CHECK (
        fee IS NULL OR (
            fee ~ '^[0-9]+[a-zA-Z][a-zA-Z0-9/:._-]{2,127}(,[0-9]+[a-zA-Z][a-zA-Z0-9/:._-]{2,127})*$'
            AND length(fee) <= 1000)),
    ADD CONSTRAINT submission_results_deployment_nonce_kind_key UNIQUE (deployment_id, nonce, kind);

-- Window queries (last N, 1 h / 24 h / 7 d rates and percentiles of one deployment) read only this
-- index: the columns they aggregate are included, so millions of rows of other deployments and older
-- results are never visited. It replaces the plain (deployment_id, created_at) index.
CREATE INDEX submission_results_window_idx
    ON submission_results (deployment_id, created_at DESC) INCLUDE (kind, status, latency_ms);
DROP INDEX submission_results_deployment_created_idx;
-- (deployment_id, nonce) lookups use the unique key's index now.
DROP INDEX submission_results_deployment_nonce_idx;
-- Retention (`results prune`) deletes by age across all deployments. Results arrive roughly in time
-- order, which is what BRIN is for: a few pages instead of a B-tree over every row, almost free to keep.
CREATE INDEX submission_results_created_brin ON submission_results USING brin (created_at);
