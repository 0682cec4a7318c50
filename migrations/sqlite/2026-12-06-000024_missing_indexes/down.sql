DROP INDEX blob_deletions_order;
DROP INDEX invitations_invited_by;
DROP INDEX invitations_email;
DROP INDEX notices_submission;
DROP INDEX message_files_blob;
DROP INDEX attachments_blob;
