-- 0005: sandbox runs are deployment rows of kind 'sandbox' (allora-gitops sandbox), with an end time and an owner.
--
-- A sandbox is a batch/v1 Job on testnet with the platform's wallet, for at most one hour; `sandbox prune`
-- retires the row when it removes the directory. Ordinary deployments keep kind 'deployment' and no end.

ALTER TABLE deployments ADD COLUMN kind text NOT NULL DEFAULT 'deployment';
ALTER TABLE deployments ADD COLUMN expires_at timestamptz;
ALTER TABLE deployments ADD COLUMN owner text;
ALTER TABLE deployments ADD CONSTRAINT deployments_kind_valid CHECK (kind IN ('deployment', 'sandbox'));
ALTER TABLE deployments ADD CONSTRAINT deployments_sandbox_has_end CHECK ((kind = 'sandbox') = (expires_at IS NOT NULL));
ALTER TABLE deployments ADD CONSTRAINT deployments_owner_format CHECK (owner IS NULL OR owner ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$');
CREATE INDEX deployments_kind_owner_idx ON deployments (kind, owner) WHERE kind = 'sandbox';
