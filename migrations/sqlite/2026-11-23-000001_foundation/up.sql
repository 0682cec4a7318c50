-- Accounts, sessions, login throttling, settings, and the tamper-evident audit log.
CREATE TABLE organisations (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('submitter', 'officer', 'authorized_user', 'auditor', 'administrator')),
    organisation_id TEXT REFERENCES organisations(id),
    password_hash TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    training_completed_at BIGINT,
    nda_signed_at BIGINT,
    nda_reference TEXT,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);
CREATE INDEX users_role ON users(role);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE login_throttle (
    throttle_key TEXT PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT 0
);

CREATE TABLE settings (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor_id TEXT,
    actor_role TEXT,
    client_addr TEXT,
    action TEXT NOT NULL,
    object_kind TEXT,
    object_id TEXT,
    tracking_number TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL
);
CREATE INDEX audit_actor ON audit_entries(actor_id, seq);
CREATE INDEX audit_action ON audit_entries(action, seq);
CREATE INDEX audit_object ON audit_entries(object_id, seq);
CREATE INDEX audit_tracking ON audit_entries(tracking_number, seq);
CREATE INDEX audit_outcome ON audit_entries(outcome, seq);
CREATE INDEX audit_at ON audit_entries(at);

-- The chain head: every fact transaction locks this one row first, which serialises writers
-- (SQLite and several PostgreSQL instances alike) so sequence numbers stay gapless and the chain linear.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq BIGINT NOT NULL,
    entry_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY NOT NULL,
    from_seq BIGINT NOT NULL,
    chain_head TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    at BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- The audit log is append-only; a database administrator can still drop this, which is what the hash chain
-- and the signed checkpoints are for.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;
