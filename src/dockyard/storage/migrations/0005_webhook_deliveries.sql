-- Outgoing webhooks are rows, so a delivery and its retries survive a process crash.
-- status: pending (due at next_attempt_at) -> succeeded | failed. A claim bumps `attempts` and
-- pushes next_attempt_at past the attempt's timeout (a lease): if the delivering process dies,
-- the row is simply due again. `body` is the exact JSON text sent, identical on every retry.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL DEFAULT 'default',
    run_id TEXT NOT NULL,
    thread_id TEXT,
    assistant_id TEXT,
    graph_id TEXT,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_run ON webhook_deliveries (tenant_id, run_id, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_updated ON webhook_deliveries (updated_at);

-- Idempotency keys of inbound trigger events: one row per (tenant, trigger, key), so a
-- redelivered event answers with the run it started the first time. `started` is 0 while the
-- run is being created (a row left at 0 by a crashed process is taken over after a while).
CREATE TABLE IF NOT EXISTS trigger_events (
    tenant_id TEXT NOT NULL DEFAULT 'default',
    trigger_name TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    thread_id TEXT,
    started INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, trigger_name, idempotency_key)
);
CREATE INDEX IF NOT EXISTS trigger_events_created ON trigger_events (created_at);
