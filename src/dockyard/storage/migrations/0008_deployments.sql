-- Serving revisions side by side (issue 7): which revision a tenant's new threads go to, which
-- revision each thread and run is pinned to, the history of promotions and rollbacks, and the
-- revisions' own environment variables.

-- What verification did (unpacking, the environment, imports, smoke inputs, with timings):
-- the release console's build log. Written once, with the row.
ALTER TABLE revisions ADD COLUMN build_log TEXT;

-- A run executes on exactly one revision: NULL is the server's own project (the "base"),
-- otherwise the revision whose worker processes claim it (RunQueue.claim filters on it).
ALTER TABLE runs ADD COLUMN revision_id TEXT;
-- A thread is pinned at its first run: a revision id, 'base', or NULL (no run yet). A thread
-- waiting days at an interrupt resumes on the code it started on.
ALTER TABLE threads ADD COLUMN revision_id TEXT;
UPDATE threads SET revision_id = 'base'
    WHERE EXISTS (SELECT 1 FROM runs WHERE runs.thread_id = threads.thread_id);
CREATE INDEX IF NOT EXISTS runs_revision_status ON runs (revision_id, status);

-- One row per tenant that has promoted a revision. current NULL: new threads run on the base.
-- A canary takes `canary_percent` of new threads (by a hash of the thread id). auto_rollback:
-- JSON thresholds ({"max_error_rate", "max_p95_seconds", "min_runs", "window_seconds"}).
-- `version` grows with every change, so changes are compare-and-set.
CREATE TABLE IF NOT EXISTS deployments (
    tenant_id TEXT PRIMARY KEY,
    current_revision_id TEXT,
    canary_revision_id TEXT,
    canary_percent REAL NOT NULL DEFAULT 0,
    auto_rollback JSON,
    version INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    updated_by TEXT
);

-- Append-only history: promote, canary, rollback, auto_rollback. `from_revision_id` is what
-- was current (or the canary, for canary events) before; rollback walks these back.
CREATE TABLE IF NOT EXISTS deployment_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    revision_id TEXT,
    from_revision_id TEXT,
    actor TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS deployment_events_tenant_at ON deployment_events (tenant_id, at);

-- A revision's environment variables (secrets included): set through the API, given to the
-- revision's worker processes, never returned by the API (names only) nor logged.
CREATE TABLE IF NOT EXISTS revision_env (
    tenant_id TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, revision_id, name)
);
