-- Every list orders by `(created_at, id)` descending within a
-- subscription; each filter has an index with that suffix, so a page is a
-- range scan whatever the depth. Counts and buckets read covering indexes.
-- The console: newest-first delivery lists, filtered, keyset paged.
CREATE INDEX deliveries_recent
    ON deliveries (subscription, created_at, id, state);
CREATE INDEX deliveries_recent_by_state
    ON deliveries (subscription, state, created_at, id);
CREATE INDEX deliveries_recent_by_status
    ON deliveries (subscription, last_status, created_at, id)
    WHERE last_status IS NOT NULL;
-- Delivered vs failed over time, by when each ended.
CREATE INDEX deliveries_ended
    ON deliveries (subscription, updated_at, state)
    WHERE state IN ('delivered', 'failed');
