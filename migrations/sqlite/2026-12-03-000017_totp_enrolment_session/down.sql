ALTER TABLE totp_enrolments DROP COLUMN session_hash;
