DELETE FROM privilege_requests WHERE change = 'reset_factors';
ALTER TABLE privilege_requests DROP CONSTRAINT privilege_requests_change_check;
ALTER TABLE privilege_requests ADD CONSTRAINT privilege_requests_change_check
    CHECK (change IN ('role', 'disable', 'enable'));
ALTER TABLE organisations DROP COLUMN require_second_factor;
ALTER TABLE sessions DROP COLUMN webauthn_state;
ALTER TABLE sessions DROP COLUMN second_factor_at;
DROP TABLE passkeys;
DROP TABLE recovery_codes;
DROP TABLE totp_enrolments;
DROP TABLE totp_factors;
