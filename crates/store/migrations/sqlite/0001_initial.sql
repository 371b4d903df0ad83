CREATE TABLE topics (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE subscriptions (
    name        TEXT PRIMARY KEY,
    topic       TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX subscriptions_by_topic ON subscriptions (topic);

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    topic         TEXT NOT NULL,
    source        TEXT NOT NULL,
    id            TEXT NOT NULL,
    type          TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    data          BLOB,
    published_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_identity ON events (topic, source, id);

CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    subscription      TEXT NOT NULL,
    event_seq         INTEGER NOT NULL,
    state             TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    first_attempt_at  INTEGER,
    last_attempt_at   INTEGER,
    last_status       INTEGER,
    last_error        TEXT,
    failure_reason    TEXT,
    lease_until       INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) WITHOUT ROWID;
-- The due queue: only scheduled rows, so it stays as small as the backlog.
CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at)
    WHERE state = 'scheduled';
CREATE INDEX deliveries_leases ON deliveries (lease_until)
    WHERE state = 'in_flight';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription, id);
CREATE INDEX deliveries_by_state ON deliveries (subscription, state, id);

CREATE TABLE attempts (
    delivery_id       TEXT NOT NULL,
    number            INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    status            INTEGER,
    error             TEXT,
    error_message     TEXT,
    response_snippet  TEXT,
    decision          TEXT NOT NULL,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
