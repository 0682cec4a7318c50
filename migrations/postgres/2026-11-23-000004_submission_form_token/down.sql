DROP INDEX submissions_form_token;
ALTER TABLE submissions DROP COLUMN form_token;
