-- SQLite only (its audit table becomes keyed by seq, its rowid): PostgreSQL's BIGINT PRIMARY KEY stays as it is.
-- Kept here so that both backends have the same list of migrations.
SELECT 1;
