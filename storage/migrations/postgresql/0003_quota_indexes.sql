-- Version 3: indexes for the queries a reservation runs (the ledger sums read only the index).

DROP INDEX ledger_guild_time;
DROP INDEX ledger_member_time;
CREATE INDEX ledger_guild_window ON ledger (guild_id, created_at, state, credits);
CREATE INDEX ledger_member_window ON ledger (guild_id, user_id, created_at, state, credits);

DROP INDEX generations_unfinished;
CREATE INDEX generations_active ON generations (guild_id, user_id) WHERE status IN ('queued', 'running');
