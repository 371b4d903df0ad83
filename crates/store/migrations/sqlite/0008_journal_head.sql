-- Journal positions (`events.seq`) must never be handed out twice, but an
-- `INTEGER PRIMARY KEY` without `AUTOINCREMENT` reuses the highest rowid
-- once the newest events are purged. Rebuilding `events` with
-- `AUTOINCREMENT` would copy the whole table on upgrade; instead the highest
-- position ever handed out is kept in a one-row table that every publish
-- raises. An existing store starts above both its newest event and every
-- journal floor, so positions a reader has already seen are not renumbered
-- and any position already reused stays below what comes next.
CREATE TABLE journal_head (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_seq   INTEGER NOT NULL
);
INSERT INTO journal_head (singleton, last_seq)
SELECT 1, MAX(COALESCE((SELECT MAX(seq) FROM events), 0),
              COALESCE((SELECT MAX(purged_through) FROM journal_floors), 0));
