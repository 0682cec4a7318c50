ALTER TABLE submissions DROP COLUMN sent_sector;
ALTER TABLE submissions DROP COLUMN sent_content_blob_id;
