-- Per-tenant quotas (services/quotas.py). NULL: the server's default (DOCKYARD_TENANT_*);
-- 0: unlimited.
CREATE TABLE IF NOT EXISTS tenant_quotas (
    tenant_id TEXT PRIMARY KEY,
    max_concurrent_runs INTEGER,
    runs_per_minute INTEGER,
    max_stored_bytes INTEGER,
    updated_at TEXT NOT NULL
);

-- Runs created per tenant per minute (a fixed window), counted in the transaction that
-- inserts the run, so every API replica and cron scheduler sees the same figure. Runs
-- themselves cannot be counted: stateless runs are deleted when they finish.
CREATE TABLE IF NOT EXISTS tenant_run_windows (
    tenant_id TEXT NOT NULL,
    window_start TEXT NOT NULL,
    runs INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, window_start)
);

