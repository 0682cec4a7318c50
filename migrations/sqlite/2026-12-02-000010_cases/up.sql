-- Case management (src/workflow/cases.rs): who handles a submission, whether it came back cured, its title for
-- the lists (sealed), and the officers' case notes (sealed).

-- The officer handling the submission (an officer's account id; the workflow checks the role), and since when.
ALTER TABLE submissions ADD COLUMN assigned_to TEXT;
ALTER TABLE submissions ADD COLUMN assigned_at BIGINT;
-- Set when the submitter cures a defective submission (it is received again), cleared by the next decision:
-- the queue flags it "Cured — re-review" until then.
ALTER TABLE submissions ADD COLUMN cured_at BIGINT;
-- The title, sealed to the submission's data key like the officers' texts (`age:<key id>:<base64>`), written with
-- every content version; NULL for rows saved before this column (filled when an officer next opens the page).
ALTER TABLE submissions ADD COLUMN title_sealed TEXT;

-- Officer-only notes on a submission; `body` is sealed to the submission's data key and dies with it.
CREATE TABLE case_notes (
    id TEXT PRIMARY KEY NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    author_id TEXT NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX case_notes_submission ON case_notes(submission_id, created_at);

-- The queue's indexes (src/models/queue.rs) carry the assignee and the cure mark too, so "unassigned" is tested
-- on the index entries a plan reads anyway.
DROP INDEX submissions_queue;
CREATE INDEX submissions_queue ON submissions(status DESC, received_at, id, cure_due_at, assigned_to, cured_at);
DROP INDEX submissions_queue_receipt;
CREATE INDEX submissions_queue_receipt ON submissions(received_at, id, status, cure_due_at, assigned_to, cured_at);
DROP INDEX submissions_queue_cure;
CREATE INDEX submissions_queue_cure ON submissions(status, cure_due_at, received_at, id, assigned_to, cured_at);
-- One officer's cases (a small subset, like one organisation's), and the unassigned ones of a status.
CREATE INDEX submissions_queue_assignee ON submissions(assigned_to, status, received_at, id, cure_due_at, cured_at);
-- The cured submissions awaiting re-review (a small subset: the mark is cleared by the next decision).
CREATE INDEX submissions_queue_cured ON submissions(cured_at, status, received_at, id, cure_due_at, assigned_to);
