-- Fair claiming walks pending runs tenant by tenant in priority order.
CREATE INDEX IF NOT EXISTS runs_fair ON runs (status, tenant_id, priority, created_at);
CREATE INDEX IF NOT EXISTS runs_tenant_status ON runs (tenant_id, status);
CREATE INDEX IF NOT EXISTS runs_assistant_status ON runs (assistant_id, status);
