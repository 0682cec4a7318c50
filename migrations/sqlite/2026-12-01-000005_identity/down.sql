PRAGMA foreign_keys = OFF;
BEGIN;
DROP TABLE account_tokens;
DROP TABLE privilege_requests;
DROP TABLE invitations;
ALTER TABLE sessions DROP COLUMN user_agent;
ALTER TABLE sessions DROP COLUMN client_addr;
ALTER TABLE sessions DROP COLUMN public_id;
DROP INDEX users_organisation;
ALTER TABLE users DROP COLUMN nda_expires_at;
ALTER TABLE users DROP COLUMN agency;
ALTER TABLE users DROP COLUMN email_verified_at;
ALTER TABLE users DROP COLUMN org_admin;
-- Names were unique before: tell apart organisations that share one.
UPDATE organisations SET name = name || ' (' || id || ')'
WHERE EXISTS (SELECT 1 FROM organisations o2 WHERE o2.name = organisations.name AND o2.id < organisations.id);
CREATE TABLE organisations_old (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
INSERT INTO organisations_old (id, name, created_at) SELECT id, name, created_at FROM organisations;
DROP TABLE organisations;
ALTER TABLE organisations_old RENAME TO organisations;
COMMIT;
PRAGMA foreign_keys = ON;
