-- The content version the Office last received (set when a submission or its cure is sent). While a submission is
-- defective its organisation's saves of the correction are new versions the Office has not received: the receipt
-- shows this one. Submissions sent before this migration: their current version, unless it is a defective one's
-- with a version saved after its defect notice (then unknown: the current one is shown, as before).
ALTER TABLE submissions ADD COLUMN sent_content_blob_id TEXT;
UPDATE submissions SET sent_content_blob_id = content_blob_id
WHERE status <> 'draft'
  AND NOT (status = 'defective' AND EXISTS (
    SELECT 1 FROM blobs b
    WHERE b.submission_id = submissions.id AND b.kind = 'content' AND b.created_at > submissions.defect_notice_at));
