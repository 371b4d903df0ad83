-- Failure lifecycle: dead-letter links, redrive budgets, retention, purge.
ALTER TABLE deliveries ADD COLUMN dead_letter_event TEXT;
ALTER TABLE deliveries ADD COLUMN attempts_before_redrive INTEGER NOT NULL DEFAULT 0;
-- Retention counts from here when set (the last redrive), else from created_at.
ALTER TABLE deliveries ADD COLUMN retention_from INTEGER;
-- Retention expiry finds the oldest undelivered deliveries without scanning
-- the backlog (the expression must match the sweeper's query exactly).
CREATE INDEX deliveries_retention
    ON deliveries (subscription, COALESCE(retention_from, created_at))
    WHERE state = 'scheduled';
-- The purge walks finished deliveries oldest first.
CREATE INDEX deliveries_finished ON deliveries (updated_at)
    WHERE state IN ('delivered', 'failed');
-- Whether an event is still referenced, and the journal's order.
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_journal ON deliveries (subscription, event_seq);
-- The highest journal position purged per subscription (for 410 Gone).
CREATE TABLE journal_floors (
    subscription    TEXT PRIMARY KEY,
    purged_through  INTEGER NOT NULL
) WITHOUT ROWID;
