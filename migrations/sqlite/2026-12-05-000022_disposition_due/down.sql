DROP INDEX IF EXISTS submissions_disposition_due;
ALTER TABLE submissions DROP COLUMN disposition_due_at;
