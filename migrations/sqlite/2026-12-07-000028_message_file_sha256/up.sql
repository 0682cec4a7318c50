-- The SHA-256 of a message file as it was sent (hex), sealed with the submission's data key like its name: the record
-- of what was given in answer to a request for information (the thread page and the package's manifest list it),
-- destroyed with the submission, never in clear (it would let a copy of the database confirm a guessed file). NULL
-- for files sent before it was kept.
ALTER TABLE message_files ADD COLUMN sha256_sealed TEXT;
