-- 0014: what the chain says about each live deployment's worker (issue 23 item 3).
--
-- deployment_workers: the worker's public address per deployment. The runtime reports it with its results
-- (source 'runtime': the address its wallet signs with); an admin may record it before any result arrived
-- (source 'admin'); a runtime report replaces an admin's record, never the other way round.
-- chain_observations: one row per read of the chain for a deployment (`serve`'s poller, `chain status`),
-- kept for a retention period (ALLORA_CHAIN_RETENTION_HOURS). A failed read is a row too (reachable = false,
-- error says why), so "the chain was unreachable" is on record. Scores and fractions are the chain's decimal
-- text (Cosmos LegacyDec) kept as numeric; balance is in uallo.
CREATE TABLE deployment_workers (
    deployment_id   uuid        PRIMARY KEY REFERENCES releases (id) ON DELETE CASCADE,
    address         text        NOT NULL,
    source          text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deployment_workers_address_format CHECK (address ~ '^allo1[02-9ac-hj-np-z]{38,58}$'),
    CONSTRAINT deployment_workers_source_valid CHECK (source IN ('runtime', 'admin'))
);

CREATE TABLE chain_observations (
    id               bigserial   PRIMARY KEY,
    deployment_id    uuid        NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    observed_at      timestamptz NOT NULL DEFAULT now(),
    address          text        NOT NULL,
    topic_id         bigint      NOT NULL,
    reachable        boolean     NOT NULL,
    error            text,
    window_open      boolean,
    current_nonce    bigint,
    epoch_length     bigint,
    registered       boolean,
    whitelisted      boolean,
    topic_active     boolean,
    can_submit       boolean,
    score_ema        numeric,
    lowest_score     numeric,
    reward_fraction  numeric,
    balance_uallo    numeric,
    CONSTRAINT chain_observations_reachable_complete CHECK (
        (reachable AND error IS NULL AND current_nonce IS NOT NULL AND registered IS NOT NULL)
        OR (NOT reachable AND error IS NOT NULL)),
    CONSTRAINT chain_observations_error_text CHECK (
        error IS NULL OR (length(error) <= 1000 AND NOT allora_looks_like_secret(error)))
);
CREATE INDEX chain_observations_deployment_observed_idx ON chain_observations (deployment_id, observed_at DESC);
CREATE INDEX chain_observations_observed_idx ON chain_observations (observed_at);
