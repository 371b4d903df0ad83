-- API tokens: the secret part is kept only as its SHA-256.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
-- Signing secrets, encrypted by the server before they get here.
CREATE TABLE signing_secrets (
    subscription    TEXT PRIMARY KEY,
    current         TEXT NOT NULL,
    previous        TEXT,
    previous_until  INTEGER,
    rotated_at      INTEGER NOT NULL
) WITHOUT ROWID;
-- A subscription created again under a deleted one's name must not inherit
-- its secret.
CREATE TRIGGER signing_secrets_follow_subscriptions AFTER DELETE ON subscriptions
BEGIN
    DELETE FROM signing_secrets WHERE subscription = OLD.name;
END;
