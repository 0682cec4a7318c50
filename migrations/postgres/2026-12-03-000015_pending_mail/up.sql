-- Mail a committed act promised (a message in a thread, an access request decided) and the mail route has not taken
-- yet: written in the act's transaction, deleted once sent. The notification round sends what is left (SMTP was
-- down, or the instance died before sending), with a growing delay, for at most three days. No address and no text:
-- the mail is built when it is sent, from the person's account and the page it links to.
CREATE TABLE pending_mail (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    path TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX pending_mail_due ON pending_mail(next_attempt_at);
