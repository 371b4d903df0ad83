-- The console's event-type filter starts from the few events of a rare
-- type instead of walking the subscription's whole history; without it a
-- rare type reads every event stored. `IF NOT EXISTS`: on a large
-- `events` table an operator may build it `CONCURRENTLY` before upgrading,
-- instead of holding publishes for the build.
CREATE INDEX IF NOT EXISTS events_by_type ON events (type);
