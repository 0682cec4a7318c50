-- A pending authenticator-app setup belongs to the browser session that started it (the hash of its token, as in
-- `sessions`): another session, even of the same account, is never shown its seed and cannot confirm it. Setups
-- pending before this column existed match no session, so the next visit starts a fresh one.
ALTER TABLE totp_enrolments ADD COLUMN session_hash TEXT NOT NULL DEFAULT '';
