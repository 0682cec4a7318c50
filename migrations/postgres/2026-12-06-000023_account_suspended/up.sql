-- An account an administrator (or the operator's CLI) disabled is suspended: only an administrator enables it again.
-- A member removed by its organisation, or one who left, is disabled but not suspended: an invitation may bring it
-- back. Without the difference, an organisation administrator could remove a suspended member and invite it back.
-- Accounts disabled before this migration: a submitter with no organisation was removed (or left); any other
-- disabled account was disabled by an administrator.
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE users SET suspended = TRUE WHERE disabled AND NOT (role = 'submitter' AND organisation_id IS NULL);
