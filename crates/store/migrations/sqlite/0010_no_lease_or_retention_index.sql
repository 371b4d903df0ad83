-- Two more indexes a delivery paid for at every step of its life, each
-- for a sweep that runs every few seconds over a handful of rows:
-- `deliveries_leases` (added at the claim, removed at the outcome) for the
-- lease rescue, and `deliveries_retention` (added at the publish and each
-- retry, removed at each claim) for retention expiry. Both sweeps now read
-- `deliveries_recent_by_state` one subscription at a time: in-flight rows
-- are few, and a retention cutoff bounds `created_at` because
-- `retention_from`, when set, is never earlier.
DROP INDEX deliveries_leases;
DROP INDEX deliveries_retention;
