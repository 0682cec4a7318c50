ALTER TABLE users DROP COLUMN suspended;
