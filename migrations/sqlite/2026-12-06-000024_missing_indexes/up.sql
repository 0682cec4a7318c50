-- Indexes the foreign-key checks and the per-page look-ups need. Without one on the child's column, deleting a blob
-- (every draft save replaces the content blob) made both databases read all of attachments and message_files to
-- check nothing still pointed at it, inside the portal-wide write lock; a submitter's page read all of its
-- organisation's notices for one submission's; an invitation read every invitation for its caps.
CREATE INDEX attachments_blob ON attachments(blob_id);
CREATE INDEX message_files_blob ON message_files(blob_id);
CREATE INDEX notices_submission ON notices(submission_id, created_at);
CREATE INDEX invitations_email ON invitations(email, created_at);
CREATE INDEX invitations_invited_by ON invitations(invited_by, created_at);
-- The deletion sweep takes those tried least first, oldest first.
CREATE INDEX blob_deletions_order ON blob_deletions(attempts, queued_at);
