-- Teams: tenants, API keys and the audit log.
-- A tenant's id is the `tenant_id` every resource row already carries; 'default' always exists
-- (it owns everything created while auth was off).
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES ('default', 'default', '1970-01-01T00:00:00+00:00')
    ON CONFLICT (id) DO NOTHING;

-- An API key is `dk_<prefix>_<secret>`. Only the SHA-256 of the whole key is stored: the
-- secret is 32 random bytes, so a fast hash is enough (a slow KDF like bcrypt defends
-- low-entropy passwords against guessing; it would only add latency to every request here).
-- `prefix` (`dk_<8 hex>`) is shown in listings and audit entries and finds the row.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    role TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL,
    name TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_prefix ON api_keys (prefix);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id, created_at);

-- Append-only: Dockyard never updates or deletes these rows. `tenant_id` is '' for a failed
-- authentication that names no known key. `outcome`: ok, denied, failed.
CREATE TABLE IF NOT EXISTS audit_log (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    outcome TEXT NOT NULL,
    detail JSON NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_tenant_at ON audit_log (tenant_id, at);
