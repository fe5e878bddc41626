-- 0002: every allora_* function finds the names it calls in its own schema, whatever the caller's search_path.
--
-- pg_dump and pg_restore run with an empty search_path. The CHECK constraints of 0001 call
-- allora_looks_like_secret(), which calls allora_has_hex_key() and allora_bip39_run() by unqualified
-- name, so a restore failed on every row of every table that has such a CHECK (0 rows restored).
-- Pinning search_path on the functions fixes it for this schema, wherever it lives.
-- New allora_* functions must pin theirs too: `allora-gitops db status` reports any that do not.
DO $do$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'allora\_%'
        ORDER BY p.oid
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog', fn, current_schema());
    END LOOP;
END
$do$;
