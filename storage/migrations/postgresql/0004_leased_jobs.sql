-- Version 4: jobs are durable, leased rows (see the SQLite file of the same number for the design). PostgreSQL
-- changes the status constraint in place; no rebuild.

ALTER TABLE generations DROP CONSTRAINT generations_status_check;
ALTER TABLE generations ADD CONSTRAINT generations_status_check
    CHECK (status IN ('queued', 'running', 'delivering', 'succeeded', 'failed', 'cancelled'));

ALTER TABLE generations
    ADD COLUMN attempt             INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN lease_owner         TEXT,
    ADD COLUMN lease_expires_at    DOUBLE PRECISION,
    ADD COLUMN cancel_requested_by BIGINT,
    ADD COLUMN remix_strategy      TEXT,
    ADD COLUMN result_json         TEXT,
    ADD COLUMN delivery_nonce      TEXT,
    ADD COLUMN delivery_started_at DOUBLE PRECISION;

UPDATE generations SET attempt = 1, delivery_nonce = substr(md5(random()::text || id::text), 1, 20);

DROP INDEX generations_active;
CREATE INDEX generations_active ON generations (guild_id, user_id) WHERE status IN ('queued', 'running', 'delivering');
CREATE INDEX generations_leases ON generations (lease_expires_at) WHERE status IN ('queued', 'running', 'delivering');
CREATE INDEX generations_lease_owner ON generations (lease_owner) WHERE status IN ('queued', 'running', 'delivering');
