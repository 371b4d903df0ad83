-- Two more indexes every delivery paid for, each read only by the history
-- purge: `deliveries_finished` (updated_at of ended deliveries, written at
-- each delivery's end) and `deliveries_by_event` (written at each
-- publish). The purge now finds ended deliveries one subscription at a time
-- through `deliveries_ended`, and whether an event is still read through
-- `deliveries_journal`, among the subscriptions of the event's topic: a
-- delivery's event is always on its subscription's topic (a subscription's
-- topic never changes, and its deliveries go with it). A delivery's life
-- now writes 12 index entries instead of 14.
DROP INDEX deliveries_finished;
DROP INDEX deliveries_by_event;
