-- Mail the portal sends on its own (defect notices, cure reminders, grants and training about to lapse, access
-- requests waiting): what was sent to whom, so that each is sent once, whichever instance sends it.
CREATE TABLE notifications_sent (
    kind TEXT NOT NULL,
    -- What it is about, with the date it counts from (a new defect notice or a renewed grant is a new subject).
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, user_id)
);
-- The optional notifications a person turned off: kinds separated by commas.
ALTER TABLE users ADD COLUMN notifications_off TEXT NOT NULL DEFAULT '';
