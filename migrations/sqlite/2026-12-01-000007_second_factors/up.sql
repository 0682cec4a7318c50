-- Second factors: TOTP, recovery codes and passkeys. No secret rests in clear: a TOTP secret is age-encrypted to
-- the master identity; recovery codes are kept as SHA-256 digests (each code carries 79 random bits).

-- A confirmed authenticator app, one per account. last_step is the highest RFC 6238 time step accepted: a code is
-- accepted once, and never one of an earlier step.
CREATE TABLE totp_factors (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users(id),
    secret_sealed TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    last_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX totp_factors_master ON totp_factors(master_key_id);

-- A secret shown to its owner and not yet confirmed with a code (replaced by the next enrolment attempt).
CREATE TABLE totp_enrolments (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users(id),
    secret_sealed TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX totp_enrolments_master ON totp_enrolments(master_key_id);

CREATE TABLE recovery_codes (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    code_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes(user_id, used_at);

-- WebAuthn credentials (passkeys and security keys): public keys and counters, no secret.
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE,
    credential TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_user ON passkeys(user_id);

-- When this session last used a second factor (NULL: signed in with the password only), and the state of a
-- WebAuthn ceremony it has begun (its challenge), kept on the server.
ALTER TABLE sessions ADD COLUMN second_factor_at BIGINT;
ALTER TABLE sessions ADD COLUMN webauthn_state TEXT;

-- A company's administrator may require a second factor of every member.
ALTER TABLE organisations ADD COLUMN require_second_factor BOOLEAN NOT NULL DEFAULT FALSE;

-- Resetting another person's second factors is a change of privilege under the two-person rule. SQLite cannot alter
-- a CHECK constraint: the table is rebuilt with the wider one.
CREATE TABLE privilege_requests_new (
    id TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES users(id),
    change TEXT NOT NULL CHECK (change IN ('role', 'disable', 'enable', 'reset_factors')),
    role TEXT CHECK (role IN ('submitter', 'officer', 'authorized_user', 'auditor', 'administrator')),
    reason TEXT,
    requested_by TEXT REFERENCES users(id),
    requested_at BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'refused', 'withdrawn')),
    decided_by TEXT REFERENCES users(id),
    decided_at BIGINT
);
INSERT INTO privilege_requests_new SELECT id, account_id, change, role, reason, requested_by, requested_at, state,
    decided_by, decided_at FROM privilege_requests;
DROP TABLE privilege_requests;
ALTER TABLE privilege_requests_new RENAME TO privilege_requests;
CREATE INDEX privilege_requests_state ON privilege_requests(state, requested_at);
