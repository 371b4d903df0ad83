-- A delivery row is written three times (published, claimed, finished),
-- and each write rewrites every index holding a column it changes. Two
-- indexes only repeated others (`deliveries_recent*` serve every query
-- that read them), and `deliveries_recent` carried `state` so that counts
-- by state could read it alone: counts by state now read
-- `deliveries_recent_by_state`, and a claim or a finished attempt no
-- longer rewrites `deliveries_recent`.
DROP INDEX deliveries_by_subscription;
DROP INDEX deliveries_by_state;
DROP INDEX deliveries_recent;
CREATE INDEX deliveries_recent ON deliveries (subscription, created_at, id);
