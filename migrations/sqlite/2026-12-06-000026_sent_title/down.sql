DROP INDEX messages_side_created;
ALTER TABLE submissions DROP COLUMN sent_title_sealed;
