-- A random token carried by each new-submission form, so that the same form sent twice (a double click, a
-- resend after a timeout) creates one submission, not two.
ALTER TABLE submissions ADD COLUMN form_token TEXT;
CREATE UNIQUE INDEX submissions_form_token ON submissions(organisation_id, form_token);
