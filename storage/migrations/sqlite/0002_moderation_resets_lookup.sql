-- Version 2: the moderation-rejection policy, admin quota resets, and fast lookup of a result message
-- (reply-to-remix maps a replied-to message back to its generation).

ALTER TABLE guild_settings ADD COLUMN charge_moderation INTEGER NOT NULL DEFAULT 0 CHECK (charge_moderation IN (0, 1));

-- A reset starts the counting window afresh at `reset_at`: for one member, or (user_id NULL) for the whole guild.
CREATE TABLE quota_resets (
    id        INTEGER PRIMARY KEY,
    guild_id  INTEGER NOT NULL,
    user_id   INTEGER,
    reset_by  INTEGER,
    reset_at  REAL    NOT NULL
);
CREATE INDEX quota_resets_guild ON quota_resets (guild_id, user_id, reset_at);

CREATE UNIQUE INDEX generations_result_message ON generations (result_message_id) WHERE result_message_id IS NOT NULL;
CREATE INDEX generations_progress_message ON generations (progress_message_id) WHERE progress_message_id IS NOT NULL;
