-- Rebuilds `deliveries` and `attempts` partitioned by delivery id, keeping
-- every row, index and storage parameter. The legacy partition reaches to
-- the end of the current UTC day, so rows of the day of the upgrade stay out
-- of the default partition; day partitions start after it.
ALTER TABLE deliveries RENAME TO deliveries_unpartitioned;
ALTER TABLE deliveries_unpartitioned DROP CONSTRAINT deliveries_pkey;
DROP INDEX deliveries_due, deliveries_leases, deliveries_by_subscription, deliveries_by_state,
    deliveries_retention, deliveries_finished, deliveries_by_event, deliveries_journal,
    deliveries_recent, deliveries_recent_by_state, deliveries_recent_by_status,
    deliveries_ended;
ALTER TABLE attempts RENAME TO attempts_unpartitioned;
ALTER TABLE attempts_unpartitioned DROP CONSTRAINT attempts_pkey;

-- Ids compare byte-wise ("C"): UUIDv7 text then sorts by creation time.
CREATE TABLE deliveries (
    id                       text COLLATE "C" NOT NULL,
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
) PARTITION BY RANGE (id);

CREATE TABLE attempts (
    delivery_id       text COLLATE "C" NOT NULL,
    number            integer NOT NULL,
    started_at        bigint NOT NULL,
    duration_ms       bigint NOT NULL,
    status            integer,
    error             text,
    error_message     text,
    response_snippet  text,
    decision          text NOT NULL
) PARTITION BY RANGE (delivery_id);

CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 1);
CREATE TABLE attempts_default PARTITION OF attempts DEFAULT WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);

-- No day partition is created below this bound: lower ranges are the
-- legacy partition's or were dropped.
CREATE TABLE partition_floor (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    bound      text COLLATE "C" NOT NULL
);

DO $$
DECLARE
    end_of_today bigint := (extract(epoch FROM
        date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day') * 1000)::bigint;
    hex text := lpad(to_hex(end_of_today), 12, '0');
    upper text := substr(hex, 1, 8) || '-' || substr(hex, 9, 4);
BEGIN
    EXECUTE format('CREATE TABLE deliveries_legacy PARTITION OF deliveries
                    FOR VALUES FROM (MINVALUE) TO (%L) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 1)', upper);
    EXECUTE format('CREATE TABLE attempts_legacy PARTITION OF attempts
                    FOR VALUES FROM (MINVALUE) TO (%L) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05)', upper);
    INSERT INTO partition_floor (bound) VALUES (upper);
END
$$;

INSERT INTO deliveries (id, subscription, event_seq, state, attempts, next_attempt_at, first_attempt_at, last_attempt_at, last_status, last_error, failure_reason, lease_until, created_at, updated_at, dead_letter_event, attempts_before_redrive, retention_from) SELECT id, subscription, event_seq, state, attempts, next_attempt_at, first_attempt_at, last_attempt_at, last_status, last_error, failure_reason, lease_until, created_at, updated_at, dead_letter_event, attempts_before_redrive, retention_from FROM deliveries_unpartitioned;
INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, error, error_message, response_snippet, decision) SELECT delivery_id, number, started_at, duration_ms, status, error, error_message, response_snippet, decision FROM attempts_unpartitioned;
DROP TABLE deliveries_unpartitioned, attempts_unpartitioned;

-- Indexes after the copy: built once instead of updated per row.
ALTER TABLE deliveries ADD PRIMARY KEY (id);
ALTER TABLE attempts ADD PRIMARY KEY (delivery_id, number);
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
CREATE INDEX deliveries_recent
    ON deliveries (subscription, created_at, id) INCLUDE (state);
CREATE INDEX deliveries_recent_by_state
    ON deliveries (subscription, state, created_at, id);
CREATE INDEX deliveries_recent_by_status
    ON deliveries (subscription, last_status, created_at, id)
    WHERE last_status IS NOT NULL;
CREATE INDEX deliveries_ended
    ON deliveries (subscription, updated_at) INCLUDE (state)
    WHERE state IN ('delivered', 'failed');
