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
DROP INDEX organisations_name;
ALTER TABLE organisations DROP COLUMN merged_at;
ALTER TABLE organisations DROP COLUMN merged_into;
ALTER TABLE organisations DROP COLUMN verification_method;
ALTER TABLE organisations DROP COLUMN verified_by;
ALTER TABLE organisations DROP COLUMN verified_at;
-- Names were unique before: tell apart organisations that share one.
UPDATE organisations SET name = name || ' (' || id || ')'
WHERE EXISTS (SELECT 1 FROM organisations o2 WHERE o2.name = organisations.name AND o2.id < organisations.id);
ALTER TABLE organisations ADD CONSTRAINT organisations_name_key UNIQUE (name);
