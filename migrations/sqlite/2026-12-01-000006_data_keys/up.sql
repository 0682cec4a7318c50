-- Key custody: each submission's blobs are sealed to a data key of its own, stored only wrapped (age-encrypted to
-- the master identity and the escrow recipients). Destroying a submission deletes its wrapped keys in the
-- decision's transaction; its ciphertexts go onto a durable deletion queue, processed after commit and swept.

CREATE TABLE data_keys (
    -- The data key's public recipient (age1...): the key id recorded with each blob sealed to it.
    key_id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    -- The secret, age-encrypted to the master identity master_key_id and to the escrow recipients.
    wrapped BLOB NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX data_keys_submission ON data_keys(submission_id, created_at);
CREATE INDEX data_keys_master ON data_keys(master_key_id);
-- The data key new blobs of the submission are sealed to (NULL: a submission from before data keys, not yet
-- converted; its blobs are sealed straight to a master identity).
ALTER TABLE submissions ADD COLUMN data_key_id TEXT;

CREATE TABLE blob_deletions (
    storage_name TEXT PRIMARY KEY NOT NULL,
    queued_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);

-- A plaintext digest in clear lets anyone holding a copy of the database confirm a guessed file. age authenticates
-- every chunk and the ciphertext digest binds a row to its file, so the plaintext digest is not needed to verify.
ALTER TABLE blobs DROP COLUMN plaintext_sha256;

-- A file's plaintext digest moves into the sealed content document (written by new uploads; `keys convert` moves
-- these legacy values there and clears them). What stays in clear is the digest of the stored ciphertext.
ALTER TABLE attachments ADD COLUMN legacy_sha256 TEXT;
UPDATE attachments SET legacy_sha256 = sha256;
ALTER TABLE attachments DROP COLUMN sha256;
-- Destruction records keep each file's number and size and each ciphertext's digest, not the plaintext digests.
UPDATE destruction_records SET digests = json_object(
    'files', json((SELECT coalesce(json_group_array(json_remove(value, '$.sha256')), '[]')
                   FROM json_each(destruction_records.digests, '$.files'))),
    'ciphertexts', json((SELECT coalesce(json_group_array(json_remove(value, '$.plaintext_sha256')), '[]')
                         FROM json_each(destruction_records.digests, '$.ciphertexts'))));
