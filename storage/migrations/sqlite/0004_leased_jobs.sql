-- Version 4: jobs are durable, leased rows. A job moves queued -> running -> delivering -> succeeded | failed |
-- cancelled. The process running it holds a lease (lease_owner until lease_expires_at, renewed on a heartbeat);
-- every claim increments `attempt`, and every write a runner makes names its attempt, so a paused or dead runner
-- can't overwrite a newer one. SQLite can't change a CHECK constraint in place: the table is rebuilt (the
-- migration runner turns foreign keys off around it and checks them before committing).

CREATE TABLE generations_new (
    id                     INTEGER PRIMARY KEY,
    parent_id              INTEGER REFERENCES generations (id) ON DELETE SET NULL,
    guild_id               INTEGER NOT NULL,
    channel_id             INTEGER NOT NULL,
    parent_channel_id      INTEGER,
    thread_id              INTEGER,
    user_id                INTEGER NOT NULL,
    locale                 TEXT,
    source_message_id      INTEGER,
    interaction_id         INTEGER,
    interaction_token      TEXT,
    interaction_created_at REAL,
    progress_message_id    INTEGER,
    result_message_id      INTEGER,
    model                  TEXT    NOT NULL,
    api_format             TEXT,
    seconds                INTEGER,
    size                   TEXT,
    orientation            TEXT,
    prompt                 TEXT    NOT NULL,
    reference_urls         TEXT    NOT NULL DEFAULT '[]',
    assistant_text         TEXT,
    task_id                TEXT,
    resumable              INTEGER NOT NULL DEFAULT 0 CHECK (resumable IN (0, 1)),
    status                 TEXT    NOT NULL DEFAULT 'queued'
                           CHECK (status IN ('queued', 'running', 'delivering', 'succeeded', 'failed', 'cancelled')),
    progress               REAL    NOT NULL DEFAULT 0,
    result_url             TEXT,
    result_bytes           INTEGER,
    thumbnail_url          TEXT,
    error_kind             TEXT,
    error_message          TEXT,
    cost                   INTEGER NOT NULL CHECK (cost >= 0),
    created_at             REAL    NOT NULL,
    started_at             REAL,
    finished_at            REAL,
    updated_at             REAL    NOT NULL,
    -- the lease
    attempt                INTEGER NOT NULL DEFAULT 0,
    lease_owner            TEXT,
    lease_expires_at       REAL,
    -- a member asked to cancel; honoured by whoever holds the lease, at its next safe point
    cancel_requested_by    INTEGER,
    -- how a remix is sent upstream (history | remix | combined), decided once and kept for a resumed job
    remix_strategy         TEXT,
    -- what the gateway answered when the video was ready (JSON), so another attempt can fetch it again
    result_json            TEXT,
    -- the nonce of the result post: a post repeated by another attempt returns the message that exists
    delivery_nonce         TEXT,
    delivery_started_at    REAL
);

INSERT INTO generations_new (
    id, parent_id, guild_id, channel_id, parent_channel_id, thread_id, user_id, locale, source_message_id,
    interaction_id, interaction_token, interaction_created_at, progress_message_id, result_message_id, model,
    api_format, seconds, size, orientation, prompt, reference_urls, assistant_text, task_id, resumable, status,
    progress, result_url, result_bytes, thumbnail_url, error_kind, error_message, cost, created_at, started_at,
    finished_at, updated_at, attempt, delivery_nonce
)
SELECT
    id, parent_id, guild_id, channel_id, parent_channel_id, thread_id, user_id, locale, source_message_id,
    interaction_id, interaction_token, interaction_created_at, progress_message_id, result_message_id, model,
    api_format, seconds, size, orientation, prompt, reference_urls, assistant_text, task_id, resumable, status,
    progress, result_url, result_bytes, thumbnail_url, error_kind, error_message, cost, created_at, started_at,
    finished_at, updated_at, 1, lower(hex(randomblob(10)))
FROM generations;

DROP TABLE generations;
ALTER TABLE generations_new RENAME TO generations;

CREATE INDEX generations_parent ON generations (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX generations_guild_user ON generations (guild_id, user_id, status);
CREATE UNIQUE INDEX generations_result_message ON generations (result_message_id) WHERE result_message_id IS NOT NULL;
CREATE INDEX generations_progress_message ON generations (progress_message_id) WHERE progress_message_id IS NOT NULL;
CREATE INDEX generations_active ON generations (guild_id, user_id) WHERE status IN ('queued', 'running', 'delivering');
CREATE INDEX generations_leases ON generations (lease_expires_at) WHERE status IN ('queued', 'running', 'delivering');
CREATE INDEX generations_lease_owner ON generations (lease_owner) WHERE status IN ('queued', 'running', 'delivering');
