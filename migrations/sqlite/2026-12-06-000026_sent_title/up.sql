-- The title as the Office last received it, sealed like `title_sealed` (set when a submission or its cure is sent).
-- While a submission is defective its organisation's saves of the correction change `title_sealed` (the
-- organisation's own lists show the draft); the officers' and authorized users' lists show this one, so that
-- nobody outside the organisation reads a correction before it is sent. Submissions sent before this migration:
-- the current title where the Office's version is the current one (or not known, then shown as before); left
-- empty where a correction is pending, and filled from the received version when an officer next opens it.
ALTER TABLE submissions ADD COLUMN sent_title_sealed TEXT;
UPDATE submissions SET sent_title_sealed = title_sealed
WHERE status <> 'draft'
  AND (sent_content_blob_id IS NULL OR sent_content_blob_id = content_blob_id);
