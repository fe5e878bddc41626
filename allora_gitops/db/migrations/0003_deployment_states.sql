-- Deployment states that follow the GitOps repository (issue 11):
--   pending → committed (on a review branch) → merged (its commit is on the base branch) → synced (cluster feedback)
--   committed → abandoned (the review branch was deleted unmerged)
--   committed / merged / synced → retiring (a retire change on a review branch) → retired (merged)
--   retiring → merged (the retire branch was deleted unmerged: it still runs)
-- Where a retire change lives, so that `sync` can tell when it is merged.
ALTER TABLE deployments ADD COLUMN retire_branch text;
ALTER TABLE deployments ADD COLUMN retire_commit_sha text;
ALTER TABLE deployments ADD CONSTRAINT deployments_retire_branch_format CHECK (
    retire_branch IS NULL OR (
        retire_branch ~ '^[A-Za-z0-9._/-]+$' AND retire_branch !~ '(^/|/$|\.\.|//|\.lock$)' AND length(retire_branch) <= 255
        AND NOT allora_looks_like_secret(retire_branch)));
ALTER TABLE deployments ADD CONSTRAINT deployments_retire_commit_sha_format CHECK (
    retire_commit_sha IS NULL OR retire_commit_sha ~ '^([0-9a-f]{40}|[0-9a-f]{64})$');

ALTER TABLE deployments DROP CONSTRAINT deployments_status_valid;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_valid CHECK (
    status IN ('pending', 'committed', 'merged', 'synced', 'failed', 'abandoned', 'retiring', 'retired'));
ALTER TABLE deployments DROP CONSTRAINT deployments_committed_has_commit;
ALTER TABLE deployments ADD CONSTRAINT deployments_committed_has_commit CHECK (
    status NOT IN ('committed', 'merged', 'synced', 'retiring') OR commit_sha IS NOT NULL);

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
        ('merged', 'synced'), ('merged', 'failed'), ('merged', 'retiring'), ('merged', 'retired'),
        ('synced', 'failed'), ('synced', 'retiring'), ('synced', 'retired'),
        ('failed', 'retired'),
        ('retiring', 'retired'), ('retiring', 'merged')
    ) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'illegal deployment status change % -> %', OLD.status, NEW.status
        USING ERRCODE = 'check_violation', CONSTRAINT = 'deployments_status_transition';
END
$fn$;
