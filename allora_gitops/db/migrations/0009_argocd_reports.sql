-- 0009: what Argo CD reports back (its notifications webhook, POST /api/v1/argocd/events), and the token it calls with.
--
-- One row per Argo CD Application and synced revision (a commit of the base branch): the newest sync status,
-- health and message Argo CD sent for it. `release_commit` is the commit of the release that revision runs
-- (the same sha for a fast-forward merge; the review branch's commit when the base branch got a merge
-- commit), so a release is joined to its report by commit at read time: nothing is added to `deployments`.

CREATE TABLE argocd_reports (
    application     text        NOT NULL,
    revision        text        NOT NULL,
    name            text        NOT NULL,
    network         text        NOT NULL,
    release_commit  text        NOT NULL,
    event           text        NOT NULL,
    sync_status     text        NOT NULL,
    health_status   text        NOT NULL,
    operation_phase text,
    message         text,       -- Argo CD's own words (sync error, health message), secrets redacted
    reported_at     timestamptz NOT NULL,  -- Argo CD's time for it (the operation's finishedAt, else reconciledAt)
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application, revision),
    CONSTRAINT argocd_reports_application_format CHECK (application ~ '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' AND length(application) <= 253),
    CONSTRAINT argocd_reports_revision_format CHECK (revision ~ '^([0-9a-f]{40}|[0-9a-f]{64})$'),
    CONSTRAINT argocd_reports_release_commit_format CHECK (release_commit ~ '^([0-9a-f]{40}|[0-9a-f]{64})$'),
    CONSTRAINT argocd_reports_event_valid CHECK (event IN ('deployed', 'sync-failed', 'health-degraded')),
    CONSTRAINT argocd_reports_sync_status_valid CHECK (sync_status IN ('Synced', 'OutOfSync', 'Unknown')),
    CONSTRAINT argocd_reports_health_status_valid CHECK (
        health_status IN ('Healthy', 'Progressing', 'Degraded', 'Suspended', 'Missing', 'Unknown')),
    CONSTRAINT argocd_reports_message_clean CHECK (
        message IS NULL OR (length(message) <= 2000 AND NOT allora_looks_like_secret(message)))
);
CREATE INDEX argocd_reports_release_idx ON argocd_reports (release_commit);
CREATE INDEX argocd_reports_application_time_idx ON argocd_reports (application, reported_at DESC);

-- The webhook token Argo CD's notifications controller sends (argocd-notifications-secret): a kind of its own,
-- never a user's API token. Stored as its sha256 and a shown prefix, like api_tokens; rotating it sets
-- `expires_at` on the previous ones (a grace period while the Secret is updated).
CREATE TABLE argocd_tokens (
    prefix        text        PRIMARY KEY,
    sha256        text        NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    CONSTRAINT argocd_tokens_prefix_format CHECK (prefix ~ '^aga_[0-9a-f]{8}$'),
    CONSTRAINT argocd_tokens_sha256_format CHECK (sha256 ~ '^[0-9a-f]{64}$')
);
