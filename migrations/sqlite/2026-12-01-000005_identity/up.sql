-- Identity: organisations are identified by id (two companies may share a name), membership and privilege are
-- granted (invitations, approvals), email addresses are verified, passwords are reset by emailed link.
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE organisations_new (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    verified_at BIGINT,
    verified_by TEXT REFERENCES users(id),
    verification_method TEXT,
    merged_into TEXT REFERENCES organisations(id),
    merged_at BIGINT
);
INSERT INTO organisations_new (id, name, created_at) SELECT id, name, created_at FROM organisations;
DROP TABLE organisations;
ALTER TABLE organisations_new RENAME TO organisations;
CREATE INDEX organisations_name ON organisations(name);

ALTER TABLE users ADD COLUMN org_admin BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
ALTER TABLE users ADD COLUMN agency TEXT;
ALTER TABLE users ADD COLUMN nda_expires_at BIGINT;
CREATE INDEX users_organisation ON users(organisation_id);
-- Accounts that exist already were made before verification existed: count them as verified.
UPDATE users SET email_verified_at = created_at;
-- Each existing organisation's earliest member becomes its organisation administrator.
UPDATE users SET org_admin = 1
WHERE role = 'submitter' AND organisation_id IS NOT NULL AND id = (
    SELECT u2.id FROM users u2
    WHERE u2.organisation_id = users.organisation_id AND u2.role = 'submitter'
    ORDER BY u2.created_at, u2.id LIMIT 1
);

ALTER TABLE sessions ADD COLUMN public_id TEXT;
ALTER TABLE sessions ADD COLUMN client_addr TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;

-- The throttle now keeps keyed hashes of what was typed, never the text: forget the old rows.
DELETE FROM login_throttle;

CREATE TABLE invitations (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT UNIQUE,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('submitter', 'officer', 'authorized_user', 'auditor', 'administrator')),
    organisation_id TEXT REFERENCES organisations(id),
    new_organisation TEXT,
    org_admin BOOLEAN NOT NULL DEFAULT 0,
    agency TEXT,
    invited_by TEXT REFERENCES users(id),
    approval TEXT CHECK (approval IN ('second_administrator', 'organisation')),
    approved_by TEXT REFERENCES users(id),
    state TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'sent', 'accepted', 'revoked', 'refused')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT REFERENCES users(id),
    account_id TEXT REFERENCES users(id)
);
CREATE INDEX invitations_organisation ON invitations(organisation_id, state);
CREATE INDEX invitations_state ON invitations(state, created_at);

-- Changes of privilege that wait for a second administrator (two-person rule): a staff role granted by a role
-- change, an administrator disabled, a staff account enabled again.
CREATE TABLE privilege_requests (
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
CREATE INDEX privilege_requests_state ON privilege_requests(state, requested_at);

CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX account_tokens_user ON account_tokens(user_id, purpose);

COMMIT;
PRAGMA foreign_keys = ON;
