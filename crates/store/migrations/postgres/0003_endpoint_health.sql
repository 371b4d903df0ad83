-- Endpoint health and pause, beside the spec.
ALTER TABLE subscriptions ADD COLUMN health text NOT NULL DEFAULT 'healthy';
ALTER TABLE subscriptions ADD COLUMN health_reason text;
-- NULL until the first change: the subscription's creation counts.
ALTER TABLE subscriptions ADD COLUMN health_changed_at bigint;
ALTER TABLE subscriptions ADD COLUMN health_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN paused boolean NOT NULL DEFAULT false;
-- Attempts that ended, per subscription, health epoch and minute.
CREATE TABLE attempt_counts (
    subscription  text NOT NULL,
    epoch         bigint NOT NULL,
    bucket        bigint NOT NULL,
    succeeded     bigint NOT NULL,
    failed        bigint NOT NULL,
    PRIMARY KEY (subscription, epoch, bucket)
);
CREATE INDEX attempt_counts_by_bucket ON attempt_counts (bucket);
