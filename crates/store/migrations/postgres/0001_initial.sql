CREATE TABLE topics (
    name        text PRIMARY KEY,
    created_at  bigint NOT NULL
);

CREATE TABLE subscriptions (
    name               text PRIMARY KEY,
    topic              text NOT NULL,
    spec               text NOT NULL,
    -- Copied out of the spec so refusing to delete a dead-letter topic is a lookup.
    dead_letter_topic  text,
    created_at         bigint NOT NULL,
    updated_at         bigint NOT NULL
);
CREATE INDEX subscriptions_by_topic ON subscriptions (topic);
CREATE INDEX subscriptions_by_dead_letter_topic ON subscriptions (dead_letter_topic)
    WHERE dead_letter_topic IS NOT NULL;

CREATE TABLE events (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text NOT NULL,
    source        text NOT NULL,
    id            text NOT NULL,
    type          text NOT NULL,
    attributes    text NOT NULL,
    data          bytea,
    published_at  bigint NOT NULL,
    UNIQUE (topic, source, id)
);

-- Every delivery row is updated a few times in its life: leave room on each
-- page so updates stay on the page, and vacuum after a small share changed,
-- since the hot rows are a small share of a table that keeps history.
CREATE TABLE deliveries (
    id                       text PRIMARY KEY,
    subscription             text NOT NULL,
    event_seq                bigint NOT NULL,
    state                    text NOT NULL,
    attempts                 integer NOT NULL DEFAULT 0,
    next_attempt_at          bigint,
    first_attempt_at         bigint,
    last_attempt_at          bigint,
    last_status              integer,
    last_error               text,
    failure_reason           text,
    lease_until              bigint,
    created_at               bigint NOT NULL,
    updated_at               bigint NOT NULL,
    dead_letter_event        text,
    attempts_before_redrive  integer NOT NULL DEFAULT 0,
    -- Retention counts from here when set (the last redrive), else from created_at.
    retention_from           bigint
) WITH (fillfactor = 80,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 1);
-- The due queue: only scheduled rows, so it stays as small as the backlog.
CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at)
    WHERE state = 'scheduled';
CREATE INDEX deliveries_leases ON deliveries (lease_until)
    WHERE state = 'in_flight';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription, id);
CREATE INDEX deliveries_by_state ON deliveries (subscription, state, id);
-- The expression must match the retention sweep's query exactly.
CREATE INDEX deliveries_retention
    ON deliveries (subscription, (COALESCE(retention_from, created_at)))
    WHERE state = 'scheduled';
-- The purge walks finished deliveries oldest first.
CREATE INDEX deliveries_finished ON deliveries (updated_at)
    WHERE state IN ('delivered', 'failed');
-- Whether an event is still referenced, and the journal's order.
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_journal ON deliveries (subscription, event_seq);

CREATE TABLE attempts (
    delivery_id       text NOT NULL,
    number            integer NOT NULL,
    started_at        bigint NOT NULL,
    duration_ms       bigint NOT NULL,
    status            integer,
    error             text,
    error_message     text,
    response_snippet  text,
    decision          text NOT NULL,
    PRIMARY KEY (delivery_id, number)
) WITH (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.05);

-- The highest journal position purged per subscription (for 410 Gone).
CREATE TABLE journal_floors (
    subscription    text PRIMARY KEY,
    purged_through  bigint NOT NULL
);
