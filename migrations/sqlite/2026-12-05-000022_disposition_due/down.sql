ALTER TABLE submissions DROP COLUMN disposition_due_at;
