ALTER TABLE submissions DROP COLUMN statement_affirmed_by;
