-- Three indexes every delivery paid for at each write: a row that changes
-- `state` is never a heap-only update, so each of its three versions
-- (published, claimed, finished) adds an entry to every index whose
-- condition it meets. Each was read by one rare query, which now reads an
-- index the hot path keeps anyway, as on SQLite (its 0011 and 0012):
-- `deliveries_recent` (a subscription's deliveries by age) by the console's
-- searches of every state, which now read the subscription's range of
-- each state in `deliveries_recent_by_state` and merge the four, newest
-- first; `deliveries_finished` (ended deliveries by age) by the history
-- purge, which now finds them one subscription at a time through
-- `deliveries_ended`; and `deliveries_by_event` by the purge's check that
-- an event is still read, which now looks among the subscriptions of the
-- event's topic through `deliveries_journal`. Dropping a partitioned
-- index drops it on every partition. A delivery's life (published,
-- claimed, delivered) now writes 12 index entries instead of 19.
DROP INDEX deliveries_recent;
DROP INDEX deliveries_finished;
DROP INDEX deliveries_by_event;
