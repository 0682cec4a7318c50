ALTER TABLE message_files DROP COLUMN sha256_sealed;
