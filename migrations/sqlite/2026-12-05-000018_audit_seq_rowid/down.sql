DROP TRIGGER audit_entries_no_update;
DROP TRIGGER audit_entries_no_delete;
CREATE TABLE audit_entries_rebuilt (
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
INSERT INTO audit_entries_rebuilt SELECT seq, at, actor_id, actor_role, client_addr, action, object_kind, object_id,
    tracking_number, outcome, reason, request_id, prev_hash, entry_hash FROM audit_entries ORDER BY seq;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_rebuilt RENAME TO audit_entries;
CREATE INDEX audit_actor ON audit_entries(actor_id, seq);
CREATE INDEX audit_action ON audit_entries(action, seq);
CREATE INDEX audit_object ON audit_entries(object_id, seq);
CREATE INDEX audit_tracking ON audit_entries(tracking_number, seq);
CREATE INDEX audit_outcome ON audit_entries(outcome, seq);
CREATE INDEX audit_at ON audit_entries(at);
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;
