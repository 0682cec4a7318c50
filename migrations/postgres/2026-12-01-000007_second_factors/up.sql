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

-- Resetting another person's second factors is a change of privilege under the two-person rule.
ALTER TABLE privilege_requests DROP CONSTRAINT privilege_requests_change_check;
ALTER TABLE privilege_requests ADD CONSTRAINT privilege_requests_change_check
    CHECK (change IN ('role', 'disable', 'enable', 'reset_factors'));
