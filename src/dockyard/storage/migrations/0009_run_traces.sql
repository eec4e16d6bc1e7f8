-- Persisted run traces (issue 5): one header per run and one row per span: a node's task (per
-- attempt of the task), an LLM call or a tool call. Written by the executor in batches (at the
-- end of the run, in the transaction that records its outcome; every second while a long run
-- executes), read by GET /threads/{thread_id}/runs/{run_id}/trace, deleted after
-- DOCKYARD_TRACE_RETENTION_DAYS. `attempt` is the run's claim: a run resumed after its worker
-- died records a second attempt beside the first.
CREATE TABLE IF NOT EXISTS run_traces (
    run_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    -- the checkpoint the run started from (null: the thread's first run): replays fork there
    base_checkpoint_id TEXT,
    span_count INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    -- totals over the spans: nodes, errors, LLM and tool calls, token usage
    metadata JSON NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_traces_tenant_created ON run_traces (tenant_id, created_at);
-- Deleting a thread deletes its runs' traces (storage/resources.py: Threads.delete).
CREATE INDEX IF NOT EXISTS run_traces_thread ON run_traces (tenant_id, thread_id);

-- `metadata`: the small fields every listing returns (step, triggers, next nodes, retry, error
-- type and message, model, token usage, output hash); `detail`: the bulky ones, read one span at
-- a time (input, output, stack trace, LLM messages), each value capped at
-- DOCKYARD_TRACE_MAX_VALUE_BYTES. Times are epoch milliseconds.
CREATE TABLE IF NOT EXISTS run_spans (
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    parent_seq INTEGER,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    namespace TEXT NOT NULL,
    step INTEGER,
    status TEXT NOT NULL,
    start_ms REAL NOT NULL,
    end_ms REAL,
    metadata JSON NOT NULL,
    detail JSON NOT NULL,
    PRIMARY KEY (run_id, attempt, seq)
);

-- The queue page's recent failures of a tenant, newest first, without sorting them all.
CREATE INDEX IF NOT EXISTS runs_tenant_status_updated ON runs (tenant_id, status, updated_at);
