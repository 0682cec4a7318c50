-- Authorized users' requests for need-to-know access to one validated submission, and what an officer decided.
-- `reason` (the analyst's) and `refuse_reason` (the officer's) are sealed with the submission's data key, like
-- every other free text about a submission: the table shows who asked for what and when, never their words.
CREATE TABLE access_requests (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    reason TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'granted', 'refused')),
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT REFERENCES users(id),
    refuse_reason TEXT
);
-- One pending request per analyst and submission (the service checks first; this holds under any race).
CREATE UNIQUE INDEX access_requests_one_pending ON access_requests(user_id, submission_id) WHERE state = 'pending';
CREATE INDEX access_requests_state ON access_requests(state, created_at);
CREATE INDEX access_requests_user ON access_requests(user_id, created_at);
CREATE INDEX access_requests_submission ON access_requests(submission_id);
