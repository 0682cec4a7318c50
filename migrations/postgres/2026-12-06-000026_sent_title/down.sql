ALTER TABLE submissions DROP COLUMN sent_title_sealed;
