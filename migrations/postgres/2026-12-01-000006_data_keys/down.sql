ALTER TABLE attachments ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
UPDATE attachments SET sha256 = coalesce(legacy_sha256, '');
ALTER TABLE attachments DROP COLUMN legacy_sha256;
ALTER TABLE blobs ADD COLUMN plaintext_sha256 TEXT NOT NULL DEFAULT '';
DROP TABLE blob_deletions;
ALTER TABLE submissions DROP COLUMN data_key_id;
DROP TABLE data_keys;
