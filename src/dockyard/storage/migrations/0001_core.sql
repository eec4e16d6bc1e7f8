-- Dockyard core schema. Every resource row carries tenant_id ('default' until teams land).
-- Portable SQL: JSON columns are TEXT here; the PostgreSQL dialect maps the JSON type to JSONB.
CREATE TABLE IF NOT EXISTS assistants (
    assistant_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL DEFAULT 'default',
    graph_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    config JSON NOT NULL,
    context JSON NOT NULL,
    metadata JSON NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assistants_tenant_graph ON assistants (tenant_id, graph_id);

CREATE TABLE IF NOT EXISTS assistant_versions (
    assistant_id TEXT NOT NULL REFERENCES assistants (assistant_id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    tenant_id TEXT NOT NULL DEFAULT 'default',
    graph_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    config JSON NOT NULL,
    context JSON NOT NULL,
    metadata JSON NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (assistant_id, version)
);

CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL DEFAULT 'default',
    status TEXT NOT NULL DEFAULT 'idle',
    metadata JSON NOT NULL,
    config JSON NOT NULL,
    "values" JSON,
    interrupts JSON NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_tenant_created ON threads (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS threads_tenant_status ON threads (tenant_id, status);

CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL DEFAULT 'default',
    thread_id TEXT NOT NULL,
    assistant_id TEXT NOT NULL,
    assistant_version INTEGER NOT NULL,
    graph_id TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata JSON NOT NULL,
    kwargs JSON NOT NULL,
    multitask_strategy TEXT NOT NULL,
    temporary INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at TEXT NOT NULL,
    worker_id TEXT,
    lease_until TEXT,
    started_at TEXT,
    ended_at TEXT,
    error JSON,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (status, available_at, priority, created_at);
CREATE INDEX IF NOT EXISTS runs_thread ON runs (thread_id, created_at);

CREATE TABLE IF NOT EXISTS crons (
    cron_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL DEFAULT 'default',
    assistant_id TEXT NOT NULL,
    thread_id TEXT,
    schedule TEXT NOT NULL,
    payload JSON NOT NULL,
    metadata JSON NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    next_run_date TEXT,
    end_time TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS store_items (
    tenant_id TEXT NOT NULL DEFAULT 'default',
    prefix TEXT NOT NULL,
    key TEXT NOT NULL,
    value JSON NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT,
    ttl_minutes REAL,
    PRIMARY KEY (tenant_id, prefix, key)
);
CREATE INDEX IF NOT EXISTS store_items_expiry ON store_items (expires_at);
