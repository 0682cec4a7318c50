ALTER TABLE blobs ADD COLUMN plaintext_sha256 TEXT NOT NULL DEFAULT '';
DROP TABLE blob_deletions;
ALTER TABLE submissions DROP COLUMN data_key_id;
DROP TABLE data_keys;
