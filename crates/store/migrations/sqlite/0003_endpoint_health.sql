-- Endpoint health and pause, beside the spec.
ALTER TABLE subscriptions ADD COLUMN health TEXT NOT NULL DEFAULT 'healthy';
ALTER TABLE subscriptions ADD COLUMN health_reason TEXT;
-- NULL until the first change: the subscription's creation counts.
ALTER TABLE subscriptions ADD COLUMN health_changed_at INTEGER;
ALTER TABLE subscriptions ADD COLUMN health_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
-- Attempts that ended, per subscription, health epoch and minute.
CREATE TABLE attempt_counts (
    subscription  TEXT NOT NULL,
    epoch         INTEGER NOT NULL,
    bucket        INTEGER NOT NULL,
    succeeded     INTEGER NOT NULL,
    failed        INTEGER NOT NULL,
    PRIMARY KEY (subscription, epoch, bucket)
) WITHOUT ROWID;
CREATE INDEX attempt_counts_by_bucket ON attempt_counts (bucket);
