-- 0008: a deployment is a model on a network; each reviewed change of it is a release (issue 20).
--
-- Until now each row of `deployments` was one publish of one bundle version on one network, so a model on a
-- network had many rows and nothing said which one runs. From here:
--   deployments  one row per (name, network, kind): a stable id, an owner, and the live release (the one the
--                base branch holds, reconciled lazily from git by allora_gitops/gitops/sync.py);
--   releases     what `deployments` held, one row per reviewed change, plus the deployment it belongs to,
--                its action (publish, promote, rollback, retire, pin) and who made it. A merged release
--                that a later one replaced is `superseded`.
-- submission_results.deployment_id keeps pointing at the row that produced the result, which is now a
-- release (the foreign key follows the rename; the column keeps its name so writers are unchanged).
--
-- Every existing row stays (ids unchanged), grouped into deployments by bundle name, network and kind. Names
-- and deployments without an owner belong to the reserved `platform` user.

ALTER TABLE deployments RENAME TO releases;
-- index names are schema-wide: free them for the new table (constraint names stay, they are per table)
ALTER INDEX deployments_pkey RENAME TO releases_pkey;
ALTER INDEX deployments_bundle_network_idx RENAME TO releases_bundle_network_idx;
ALTER INDEX deployments_network_status_idx RENAME TO releases_network_status_idx;
ALTER INDEX deployments_updated_at_idx RENAME TO releases_updated_at_idx;
ALTER INDEX deployments_kind_owner_idx RENAME TO releases_kind_owner_idx;
ALTER TRIGGER deployments_touch ON releases RENAME TO releases_touch;
ALTER TRIGGER deployments_status_transition ON releases RENAME TO releases_status_transition;

-- The reserved owner of everything published from the CLI without --owner (it never gets an API token).
INSERT INTO platform_users (name) VALUES ('platform') ON CONFLICT (name) DO NOTHING;
INSERT INTO bundle_owners (name, user_id)
SELECT DISTINCT b.name, (SELECT id FROM platform_users WHERE name = 'platform') FROM model_bundles b
ON CONFLICT (name) DO NOTHING;

CREATE TABLE deployments (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text        NOT NULL,
    network          text        NOT NULL,
    kind             text        NOT NULL DEFAULT 'deployment',
    owner            text        NOT NULL DEFAULT 'platform',
    live_release_id  uuid        REFERENCES releases (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deployments_name_network_kind_key UNIQUE (name, network, kind),
    CONSTRAINT deployments_name_format CHECK (name ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(name) <= 53),
    CONSTRAINT deployments_network_format CHECK (network ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(network) <= 63),
    CONSTRAINT deployments_kind_valid CHECK (kind IN ('deployment', 'sandbox')),
    CONSTRAINT deployments_owner_format CHECK (owner ~ '^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$' AND length(owner) <= 63)
);
CREATE INDEX deployments_owner_idx ON deployments (owner);
CREATE TRIGGER deployments_touch BEFORE UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION allora_touch_updated_at();

INSERT INTO deployments (name, network, kind, owner, created_at)
SELECT b.name, r.network, r.kind, coalesce(min(u.name), 'platform'), min(r.created_at)
FROM releases r
JOIN model_bundles b ON b.id = r.bundle_id
LEFT JOIN bundle_owners o ON o.name = b.name
LEFT JOIN platform_users u ON u.id = o.user_id
GROUP BY b.name, r.network, r.kind;

ALTER TABLE releases ADD COLUMN deployment_id uuid REFERENCES deployments (id) ON DELETE RESTRICT;
ALTER TABLE releases ADD COLUMN action text NOT NULL DEFAULT 'publish';
ALTER TABLE releases ADD COLUMN created_by text;
UPDATE releases r SET deployment_id = d.id,
       action = CASE WHEN r.repo_branch LIKE 'promote/%' THEN 'promote'
                     WHEN r.repo_branch LIKE 'rollback/%' THEN 'rollback' ELSE 'publish' END,
       created_by = r.owner
FROM model_bundles b, deployments d
WHERE b.id = r.bundle_id AND d.name = b.name AND d.network = r.network AND d.kind = r.kind;
ALTER TABLE releases ALTER COLUMN deployment_id SET NOT NULL;
ALTER TABLE releases ADD CONSTRAINT releases_action_valid CHECK (action IN ('publish', 'promote', 'rollback', 'retire', 'pin'));
ALTER TABLE releases ADD CONSTRAINT releases_created_by_format CHECK (
    created_by IS NULL OR created_by ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$');
CREATE INDEX releases_deployment_created_idx ON releases (deployment_id, created_at DESC);

-- superseded: a merged release that a later one replaced on the base branch. It comes back to merged only
-- when git shows the base branch running it again (the records' guess at migration time was wrong).
ALTER TABLE releases DROP CONSTRAINT deployments_status_valid;
ALTER TABLE releases ADD CONSTRAINT deployments_status_valid CHECK (
    status IN ('pending', 'committed', 'merged', 'synced', 'failed', 'abandoned', 'retiring', 'retired', 'superseded'));

CREATE OR REPLACE FUNCTION allora_deployment_transition() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    IF (OLD.status, NEW.status) IN (
        ('pending', 'committed'), ('pending', 'failed'), ('pending', 'retired'),
        ('committed', 'merged'), ('committed', 'synced'), ('committed', 'failed'), ('committed', 'abandoned'),
        ('committed', 'retiring'), ('committed', 'retired'),
        ('merged', 'synced'), ('merged', 'failed'), ('merged', 'retiring'), ('merged', 'retired'), ('merged', 'superseded'),
        ('synced', 'failed'), ('synced', 'retiring'), ('synced', 'retired'), ('synced', 'superseded'),
        ('superseded', 'merged'), ('superseded', 'retired'),
        ('failed', 'retired'),
        ('retiring', 'retired'), ('retiring', 'merged')
    ) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'illegal deployment status change % -> %', OLD.status, NEW.status
        USING ERRCODE = 'check_violation', CONSTRAINT = 'deployments_status_transition';
END
$fn$;

-- The newest merged (or synced) release of each deployment is taken as live until git says otherwise; the
-- older merged ones were replaced by it.
UPDATE deployments d SET live_release_id = newest.id
FROM (SELECT DISTINCT ON (deployment_id) deployment_id, id FROM releases
      WHERE status IN ('merged', 'synced', 'retiring') ORDER BY deployment_id, created_at DESC, id) newest
WHERE newest.deployment_id = d.id;
UPDATE releases r SET status = 'superseded', status_message = 'replaced by a later release (migration 0008)'
FROM deployments d
WHERE d.id = r.deployment_id AND r.status IN ('merged', 'synced') AND r.id IS DISTINCT FROM d.live_release_id;

-- What "live" means, once, for limits, lists, lifecycle and pages (issue 27): a deployment is live while
-- the base branch runs one of its releases (its live release, unless that is a retire; before git was first
-- read, any merged one), or a change of it waits for review (a pending or committed release, retire included:
-- until merged it still runs).
-- Retired = not live. allora_gitops/db/records.py reads only this view.
CREATE VIEW live_deployments AS
SELECT d.* FROM deployments d
WHERE EXISTS (SELECT 1 FROM releases r WHERE r.deployment_id = d.id AND (
        r.status IN ('pending', 'committed')
        OR ((r.id = d.live_release_id OR d.live_release_id IS NULL)
            AND r.action <> 'retire' AND r.status IN ('merged', 'synced', 'retiring'))));
