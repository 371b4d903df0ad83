-- A delivery row is written three times (published, claimed, finished),
-- and each write adds an entry to every index: an update that changes an
-- indexed column (`state`) is never a heap-only update. Two indexes only
-- repeated others: `deliveries_recent*` serve every query that read them.
DROP INDEX deliveries_by_subscription;
DROP INDEX deliveries_by_state;
