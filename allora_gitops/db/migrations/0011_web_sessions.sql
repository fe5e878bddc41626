-- 0011: sign-in sessions of the monitoring pages, so that signing out ends a session on the server.
--
-- Before, the session cookie was only signed (HMAC keyed by its token's stored sha256): a cookie copied before
-- sign-out stayed valid until it expired. Now each sign-in is a row; the cookie carries a random session id whose
-- sha256 is the key here (the id itself is never stored, like a token), sign-out sets ended_at, and a cookie
-- whose row is missing, ended or past expires_at is refused. Revoking the token still ends every session of it.
CREATE TABLE web_sessions (
    sha256      text        PRIMARY KEY,
    token_id    uuid        NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CONSTRAINT web_sessions_sha256_format CHECK (sha256 ~ '^[0-9a-f]{64}$')
);
CREATE INDEX web_sessions_token_idx ON web_sessions (token_id);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);
