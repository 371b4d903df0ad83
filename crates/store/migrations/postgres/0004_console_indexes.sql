-- Lists order by `(created_at, id)` descending within a subscription;
-- each filter has an index with that suffix, so a page is a range scan.
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
