-- Version 5: several processes share the database. The gateway's concurrency limit holds across all of them: a job
-- asks for a gateway slot (slot_requested_at) and holds one from slot_granted_at while its lease is alive; the
-- waiting are served oldest request first. Identify turns space the shards' gateway logins per bucket.

ALTER TABLE generations ADD COLUMN slot_requested_at REAL;
ALTER TABLE generations ADD COLUMN slot_granted_at REAL;
CREATE INDEX generations_slots ON generations (slot_requested_at) WHERE slot_requested_at IS NOT NULL
    AND status IN ('queued', 'running', 'delivering');

CREATE TABLE identify_turns (
    bucket  INTEGER PRIMARY KEY,
    last_at REAL NOT NULL
);
