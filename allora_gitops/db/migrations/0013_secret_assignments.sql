-- 0013: the Secrets a user may map into a model's environment (model.yaml environment.secrets).
--
-- The wallet rule for a model's own secrets: an API user maps `NAME: "SECRET/KEY"` only for a SECRET an admin
-- assigned to them (`allora-gitops secret assign SECRET --user U`), so one user cannot read another team's API
-- keys into their model. SECRET is a Kubernetes Secret name, or a key of the repository's secret store (which may
-- hold '/'). Names only: no value is ever stored. Separate from wallet_assignments, so a user's wallet choice
-- (the API's default wallet is the caller's only one) is not disturbed by the Secrets they may map.
CREATE TABLE secret_assignments (
    user_id      uuid        NOT NULL REFERENCES platform_users (id) ON DELETE CASCADE,
    secret_name  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, secret_name),
    CONSTRAINT secret_assignments_name_format CHECK (
        secret_name ~ '^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$' AND length(secret_name) <= 253
        AND NOT allora_looks_like_secret(secret_name))
);
