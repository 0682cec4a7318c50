-- A message thread per submission between the submitting organisation and the Program Office. The words of a
-- message (`body`) and the names of its files (`name`) are sealed with the submission's data key like every other
-- free text about a submission: the tables show who wrote when, on which side, and how large the files are; never
-- what was written. The files are blobs of the submission (sealed to the same data key) and are destroyed with it.
CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    -- Position in the thread (1, 2, ...): what read marks count against.
    seq BIGINT NOT NULL,
    author_id TEXT NOT NULL REFERENCES users(id),
    side TEXT NOT NULL CHECK (side IN ('organisation', 'office')),
    body TEXT NOT NULL,
    is_request_for_information BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_submission_seq ON messages(submission_id, seq);

CREATE TABLE message_files (
    id TEXT PRIMARY KEY NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    submission_id TEXT NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    -- None once destroyed with the submission.
    blob_id TEXT REFERENCES blobs(id) ON DELETE SET NULL,
    -- Numbered through the whole thread (1, 2, ...): how downloads are audited.
    position INTEGER NOT NULL,
    size_bytes BIGINT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX message_files_message ON message_files(message_id, position);
CREATE INDEX message_files_submission ON message_files(submission_id);

-- How far each person has read each thread: messages of the other side after `last_read_seq` are unread.
CREATE TABLE message_reads (
    user_id TEXT NOT NULL REFERENCES users(id),
    submission_id TEXT NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    last_read_seq BIGINT NOT NULL,
    last_read_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, submission_id)
);
CREATE INDEX message_reads_submission ON message_reads(submission_id);
