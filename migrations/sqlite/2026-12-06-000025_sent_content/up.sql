-- The content version and sector the Office last received (set when a submission or its cure is sent). While a
-- submission is defective its organisation's saves of the correction are new versions (and may change the sector,
-- a column of the row) that the Office has not received: the receipt shows these. Submissions sent before this
-- migration: their current version and sector, unless a version was saved after their latest defect notice and no
-- cure was sent after that notice (then unknown: left empty, and the current ones are shown, as before).
ALTER TABLE submissions ADD COLUMN sent_content_blob_id TEXT;
ALTER TABLE submissions ADD COLUMN sent_sector TEXT;
UPDATE submissions SET sent_content_blob_id = content_blob_id, sent_sector = sector
WHERE status <> 'draft'
  AND NOT (defect_notice_at IS NOT NULL
    AND (cured_at IS NULL OR cured_at < defect_notice_at)
    AND EXISTS (
      SELECT 1 FROM blobs b
      WHERE b.submission_id = submissions.id AND b.kind = 'content' AND b.created_at >= submissions.defect_notice_at));
