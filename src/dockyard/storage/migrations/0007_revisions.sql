-- Immutable revisions of a tenant's project code, uploaded by `dockyard deploy`.
-- The archive (a gzip-compressed tar, at most DOCKYARD_MAX_REVISION_BYTES) is stored in the
-- database, not under the data dir: API replicas and workers share the database, not a disk,
-- so any process can later build the revision's environment from it. Rows are never updated.
-- `content_hash` is the SHA-256 of the normalised archive (entries sorted by path, only the
-- path, type, executable bit and content count), so re-deploying the same code finds the row.
-- `status`: ready (its graphs imported in a verification process) or failed (`error` says why;
-- a failed revision never serves). `graphs`: the graph ids found; `error`: a JSON string.
CREATE TABLE IF NOT EXISTS revisions (
    revision_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    author TEXT,
    message TEXT,
    git_commit TEXT,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    error JSON,
    size_bytes INTEGER NOT NULL,
    graphs JSON NOT NULL,
    archive BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS revisions_tenant_hash ON revisions (tenant_id, content_hash);
CREATE INDEX IF NOT EXISTS revisions_tenant_created ON revisions (tenant_id, created_at);
