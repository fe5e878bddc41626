-- The platform API's accounts: users (or teams), their API tokens, which bundle names they own,
-- which wallet Secrets they may reference, and their limits. A token is stored only as the sha256
-- of its bytes plus a short prefix that identifies it in `token list`; the token itself never is.

CREATE TABLE platform_users (
    id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  text        NOT NULL UNIQUE,
    is_admin              boolean     NOT NULL DEFAULT false,
    max_live_deployments  integer,    -- NULL: the server's setting
    max_upload_bytes      bigint,     -- NULL: the server's setting
    created_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT platform_users_name_format CHECK (name ~ '^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$' AND length(name) <= 63),
    CONSTRAINT platform_users_limits_positive CHECK (
        (max_live_deployments IS NULL OR max_live_deployments >= 0) AND (max_upload_bytes IS NULL OR max_upload_bytes > 0))
);

CREATE TABLE api_tokens (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL REFERENCES platform_users (id) ON DELETE CASCADE,
    prefix        text        NOT NULL UNIQUE,
    sha256        text        NOT NULL UNIQUE,  -- of the whole token; the token itself is never stored
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CONSTRAINT api_tokens_prefix_format CHECK (prefix ~ '^agp_[0-9a-f]{8}$'),
    CONSTRAINT api_tokens_sha256_format CHECK (sha256 ~ '^[0-9a-f]{64}$')
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

-- A bundle name belongs to the user who first uploaded it: its directories in the GitOps repository
-- are shared by every version, so two owners of one name would overwrite each other's deployments.
CREATE TABLE bundle_owners (
    name        text        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES platform_users (id) ON DELETE RESTRICT,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bundle_owners_name_format CHECK (name ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(name) <= 53)
);
CREATE INDEX bundle_owners_user_idx ON bundle_owners (user_id);

-- Wallet Secrets (or external-secret keys) an admin allowed a user to reference: names only.
CREATE TABLE wallet_assignments (
    user_id      uuid        NOT NULL REFERENCES platform_users (id) ON DELETE CASCADE,
    secret_name  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, secret_name),
    CONSTRAINT wallet_assignments_name_format CHECK (
        secret_name ~ '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' AND length(secret_name) <= 253
        AND NOT allora_looks_like_secret(secret_name))
);
