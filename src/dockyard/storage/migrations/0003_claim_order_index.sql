-- Claims take a tenant's pending runs by priority DESC, created_at ASC. runs_fair (all columns
-- ascending) cannot return that order, so every claim sorted all of the tenant's pending runs
-- (and checked each one's thread) before its LIMIT: O(queue depth) per claim, ~35 ms at 4,000
-- pending runs on PostgreSQL. In index order the scan stops after the first claimable rows.
CREATE INDEX IF NOT EXISTS runs_claim ON runs (status, tenant_id, priority DESC, created_at);
