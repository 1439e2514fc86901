-- sora-bot schema, version 1. Times are epoch seconds (REAL) from the bot's clock; Discord ids are INTEGER.

-- Per-guild quota settings. A guild without a row uses the defaults below.
CREATE TABLE guild_settings (
    guild_id              INTEGER PRIMARY KEY,
    default_allowance     INTEGER DEFAULT 10 CHECK (default_allowance IS NULL OR default_allowance >= 0),  -- NULL: unlimited
    budget                INTEGER CHECK (budget IS NULL OR budget >= 0),                                   -- NULL: no guild budget
    period_mode           TEXT    NOT NULL DEFAULT 'daily' CHECK (period_mode IN ('daily', 'rolling')),
    reset_hour            INTEGER NOT NULL DEFAULT 0 CHECK (reset_hour BETWEEN 0 AND 23),
    max_concurrent_member INTEGER NOT NULL DEFAULT 1 CHECK (max_concurrent_member >= 1),
    max_concurrent_guild  INTEGER CHECK (max_concurrent_guild IS NULL OR max_concurrent_guild >= 1),       -- NULL: no limit
    admins_exempt         INTEGER NOT NULL DEFAULT 0 CHECK (admins_exempt IN (0, 1)),
    updated_at            REAL    NOT NULL
);

-- Allowance per role; a member gets the most generous of their roles' allowances (NULL: unlimited).
CREATE TABLE role_allowances (
    guild_id   INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    allowance  INTEGER CHECK (allowance IS NULL OR allowance >= 0),
    updated_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, role_id)
) WITHOUT ROWID;

-- Allowance for one member; beats every role (NULL: unlimited).
CREATE TABLE member_overrides (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    allowance  INTEGER CHECK (allowance IS NULL OR allowance >= 0),
    updated_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

CREATE TABLE bans (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    reason     TEXT,
    banned_by  INTEGER,
    created_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

-- When a guild has rows here, /sora works only in these channels (or threads under them).
CREATE TABLE allowed_channels (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    added_by   INTEGER,
    created_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;

-- One row per video request. parent_id makes remix chains a tree.
CREATE TABLE generations (
    id                     INTEGER PRIMARY KEY,
    parent_id              INTEGER REFERENCES generations (id) ON DELETE SET NULL,
    guild_id               INTEGER NOT NULL,
    channel_id             INTEGER NOT NULL,   -- where the progress and result messages are posted (may be a thread)
    parent_channel_id      INTEGER,            -- the text channel when channel_id is a thread
    thread_id              INTEGER,            -- the conversation thread created for the result, if any
    user_id                INTEGER NOT NULL,
    locale                 TEXT,
    source_message_id      INTEGER,            -- the member's reply that asked for a remix
    interaction_id         INTEGER,
    interaction_token      TEXT,               -- valid 15 min after interaction_created_at
    interaction_created_at REAL,
    progress_message_id    INTEGER,
    result_message_id      INTEGER,
    model                  TEXT    NOT NULL,
    api_format             TEXT,
    seconds                INTEGER,
    size                   TEXT,
    orientation            TEXT,
    prompt                 TEXT    NOT NULL,
    reference_urls         TEXT    NOT NULL DEFAULT '[]',   -- JSON array of URLs
    assistant_text         TEXT,               -- the gateway's raw answer, verbatim, for the remix history
    task_id                TEXT,
    resumable              INTEGER NOT NULL DEFAULT 0 CHECK (resumable IN (0, 1)),
    status                 TEXT    NOT NULL DEFAULT 'queued'
                           CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
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
    updated_at             REAL    NOT NULL
);
CREATE INDEX generations_unfinished ON generations (status) WHERE status IN ('queued', 'running');
CREATE INDEX generations_parent ON generations (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX generations_guild_user ON generations (guild_id, user_id, status);

-- The usage ledger: one reservation per generation, reserved -> charged | refunded, settled exactly once.
CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY,
    generation_id INTEGER UNIQUE REFERENCES generations (id) ON DELETE SET NULL,
    guild_id      INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    model         TEXT    NOT NULL,
    credits       INTEGER NOT NULL CHECK (credits >= 0),
    state         TEXT    NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'charged', 'refunded')),
    created_at    REAL    NOT NULL,   -- decides which quota period the credits count in
    settled_at    REAL,
    note          TEXT                -- why it was settled that way
);
CREATE INDEX ledger_guild_time ON ledger (guild_id, created_at);
CREATE INDEX ledger_member_time ON ledger (guild_id, user_id, created_at);
