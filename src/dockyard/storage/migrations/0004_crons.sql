-- Crons (services/crons.py). 0001 created the table's core; these columns complete it.
-- timezone: IANA name the schedule is read in (NULL: UTC). on_run_completed: 'delete'/'keep'
-- for the thread of a stateless cron's run (NULL for thread crons). user_id: always NULL
-- until auth lands (the reference API reports it).
ALTER TABLE crons ADD COLUMN timezone TEXT;
ALTER TABLE crons ADD COLUMN on_run_completed TEXT;
ALTER TABLE crons ADD COLUMN user_id TEXT;
-- A tick being fired: the scheduler that won the tick (compare-and-set on next_run_date)
-- writes a fresh claim_token, the tick's time and claimed_at; the transaction that inserts
-- the tick's run clears the token. A token left behind by a crashed scheduler is taken over
-- once claimed_at is stale, so a tick fires exactly once even across a crash.
ALTER TABLE crons ADD COLUMN claim_token TEXT;
ALTER TABLE crons ADD COLUMN claimed_tick TEXT;
ALTER TABLE crons ADD COLUMN claimed_at TEXT;
-- The scheduler's scan: enabled crons by next_run_date (also the wake-up time query).
CREATE INDEX IF NOT EXISTS crons_due ON crons (enabled, next_run_date);
CREATE INDEX IF NOT EXISTS crons_tenant_created ON crons (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS crons_thread ON crons (thread_id);
CREATE INDEX IF NOT EXISTS crons_assistant ON crons (assistant_id);
-- Claims left by a crashed scheduler (claimed_at is NULL unless a tick is in flight).
CREATE INDEX IF NOT EXISTS crons_claimed ON crons (claimed_at);
