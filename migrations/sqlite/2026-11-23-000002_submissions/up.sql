-- Submissions and their encrypted blobs, the lifecycle's records, grants, disseminations, destructions.
-- Only what queues need stays in clear (sector, status, dates, sizes, counts); every narrative, contact,
-- title and file name lives in an age-encrypted blob.

CREATE TABLE submissions (
    id TEXT PRIMARY KEY NOT NULL,
    tracking_number TEXT UNIQUE,
    organisation_id TEXT NOT NULL REFERENCES organisations(id),
    submitter_id TEXT NOT NULL REFERENCES users(id),
    status TEXT NOT NULL CHECK (status IN ('draft', 'received', 'defective', 'validated', 'not_validated',
        'withdrawn', 'protection_removed', 'returned', 'destroyed')),
    sector TEXT NOT NULL,
    content_blob_id TEXT,
    statement_version TEXT,
    statement_affirmed_at BIGINT,
    certified_at BIGINT,
    file_count INTEGER NOT NULL DEFAULT 0,
    total_bytes BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    received_at BIGINT,
    defect_notice_at BIGINT,
    cure_due_at BIGINT,
    decided_at BIGINT,
    decided_by TEXT REFERENCES users(id),
    disposition TEXT CHECK (disposition IS NULL OR disposition IN ('return', 'destroy')),
    closed_at BIGINT
);
CREATE INDEX submissions_queue ON submissions(status, received_at);
CREATE INDEX submissions_org ON submissions(organisation_id, created_at);
CREATE INDEX submissions_sector ON submissions(sector, status, received_at);

CREATE TABLE tracking_counters (
    year INTEGER PRIMARY KEY NOT NULL,
    last_value BIGINT NOT NULL
);

CREATE TABLE blobs (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    kind TEXT NOT NULL CHECK (kind IN ('content', 'attachment')),
    storage_name TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL,
    plaintext_sha256 TEXT NOT NULL,
    ciphertext_sha256 TEXT NOT NULL,
    plaintext_len BIGINT NOT NULL,
    ciphertext_len BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX blobs_submission ON blobs(submission_id);
CREATE INDEX blobs_key ON blobs(key_id);

CREATE TABLE attachments (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    blob_id TEXT REFERENCES blobs(id),
    position INTEGER NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    added_at BIGINT NOT NULL
);
CREATE INDEX attachments_submission ON attachments(submission_id, position);

CREATE TABLE submission_events (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    at BIGINT NOT NULL,
    actor_id TEXT REFERENCES users(id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX submission_events_submission ON submission_events(submission_id, at);

CREATE TABLE notices (
    id TEXT PRIMARY KEY NOT NULL,
    organisation_id TEXT NOT NULL REFERENCES organisations(id),
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    created_at BIGINT NOT NULL,
    message TEXT NOT NULL,
    read_at BIGINT
);
CREATE INDEX notices_org ON notices(organisation_id, created_at);

CREATE TABLE grants (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    granted_by TEXT NOT NULL REFERENCES users(id),
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT REFERENCES users(id),
    revoke_reason TEXT
);
CREATE INDEX grants_user ON grants(user_id, submission_id);
CREATE INDEX grants_submission ON grants(submission_id);

CREATE TABLE disseminations (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    recorded_by TEXT NOT NULL REFERENCES users(id),
    recipient TEXT NOT NULL,
    recipient_kind TEXT NOT NULL CHECK (recipient_kind IN ('state', 'local', 'tribal', 'territorial')),
    arrangement TEXT NOT NULL,
    what TEXT NOT NULL,
    released_at BIGINT NOT NULL,
    sanitized BOOLEAN NOT NULL,
    removed TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX disseminations_submission ON disseminations(submission_id, released_at);
CREATE INDEX disseminations_released ON disseminations(released_at);

CREATE TABLE destruction_records (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL UNIQUE REFERENCES submissions(id),
    destroyed_at BIGINT NOT NULL,
    destroyed_by TEXT REFERENCES users(id),
    reason TEXT NOT NULL,
    digests TEXT NOT NULL
);
