-- Two indexes a delivery paid for at every step of its life, each for a
-- sweep over a handful of rows: `deliveries_leases` (an entry at every
-- claim) for the lease rescue, and `deliveries_retention` (an entry at
-- every publish and retry) for retention expiry. Both sweeps, and the
-- in-flight counts of the queue statistics, now read
-- `deliveries_recent_by_state` one subscription at a time: in-flight rows
-- are few, and a retention cutoff bounds `created_at` because
-- `retention_from`, when set, is never earlier. The lease index also led
-- the planner astray: an outcome's update, planned while the table was
-- nearly empty, walked every in-flight row to find a batch's few.
DROP INDEX deliveries_leases;
DROP INDEX deliveries_retention;
