DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints;
DROP TRIGGER audit_checkpoints_no_update ON audit_checkpoints;
DROP FUNCTION audit_checkpoints_append_only();
