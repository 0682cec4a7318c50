DELETE FROM privilege_requests WHERE change = 'reset_factors';
CREATE TABLE privilege_requests_old (
    id TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES users(id),
    change TEXT NOT NULL CHECK (change IN ('role', 'disable', 'enable')),
    role TEXT CHECK (role IN ('submitter', 'officer', 'authorized_user', 'auditor', 'administrator')),
    reason TEXT,
    requested_by TEXT REFERENCES users(id),
    requested_at BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'refused', 'withdrawn')),
    decided_by TEXT REFERENCES users(id),
    decided_at BIGINT
);
INSERT INTO privilege_requests_old SELECT id, account_id, change, role, reason, requested_by, requested_at, state,
    decided_by, decided_at FROM privilege_requests;
DROP TABLE privilege_requests;
ALTER TABLE privilege_requests_old RENAME TO privilege_requests;
CREATE INDEX privilege_requests_state ON privilege_requests(state, requested_at);
ALTER TABLE organisations DROP COLUMN require_second_factor;
ALTER TABLE sessions DROP COLUMN webauthn_state;
ALTER TABLE sessions DROP COLUMN second_factor_at;
DROP TABLE passkeys;
DROP TABLE recovery_codes;
DROP TABLE totp_enrolments;
DROP TABLE totp_factors;
