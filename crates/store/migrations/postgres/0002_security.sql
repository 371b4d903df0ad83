-- API tokens: the secret part is kept only as its SHA-256.
CREATE TABLE api_tokens (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    scope        text NOT NULL,
    secret_hash  bytea NOT NULL,
    created_at   bigint NOT NULL
);
-- Signing secrets, encrypted by the server before they get here; they go
-- with their subscription.
CREATE TABLE signing_secrets (
    subscription    text PRIMARY KEY REFERENCES subscriptions (name) ON DELETE CASCADE,
    current         text NOT NULL,
    previous        text,
    previous_until  bigint,
    rotated_at      bigint NOT NULL
);
