-- One more index every delivery paid for at its publish:
-- `deliveries_recent` (a subscription's deliveries by age), read only by
-- the console's searches of every state. Those now read the
-- subscription's range of each state in `deliveries_recent_by_state` and
-- merge the four, newest first, still one index range each. A delivery's
-- life now writes 11 index entries instead of 12.
DROP INDEX deliveries_recent;
