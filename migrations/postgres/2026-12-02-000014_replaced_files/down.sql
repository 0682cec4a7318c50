ALTER TABLE attachments DROP COLUMN replaced_at;
ALTER TABLE attachments DROP COLUMN replaced_by;
