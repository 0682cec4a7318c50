-- Migration 25 left the version received unknown where a version was saved after the latest defect notice and no
-- cure was sent since. A send writes the version it sends (or keeps the one stored) in the transaction that records
-- its affirmation: the version received is the latest content version made at or before `statement_affirmed_at`.
UPDATE submissions SET sent_content_blob_id = (
    SELECT b.id FROM blobs b
    WHERE b.submission_id = submissions.id AND b.kind = 'content' AND b.created_at <= submissions.statement_affirmed_at
    ORDER BY b.created_at DESC, b.id DESC
    LIMIT 1)
WHERE status <> 'draft'
  AND sent_content_blob_id IS NULL
  AND content_blob_id IS NOT NULL
  AND statement_affirmed_at IS NOT NULL;

-- The title as the Office last received it, sealed like `title_sealed` (set when a submission or its cure is sent).
-- While a submission is defective its organisation's saves of the correction change `title_sealed` (the
-- organisation's own lists show the draft); the officers' and authorized users' lists show this one, so that
-- nobody outside the organisation reads a correction before it is sent. Submissions sent before this migration:
-- the current title where the Office's version is the current one; left empty where a correction is pending (or
-- the version received is still not known), and filled from the version received when an officer next opens it.
ALTER TABLE submissions ADD COLUMN sent_title_sealed TEXT;
UPDATE submissions SET sent_title_sealed = title_sealed
WHERE status <> 'draft'
  AND sent_content_blob_id = content_blob_id;

-- The officers' list of threads waiting for an answer reads the organisation's messages oldest first.
CREATE INDEX messages_side_created ON messages(side, created_at);

-- `sector` becomes the sector the Office holds (the queue and the search filter on it, through its indexes): a
-- correction's save keeps its own in `saved_sector` until it is sent. `sent_sector` (migration 25) is then
-- `sector` wherever it is known, and becomes `saved_sector`: corrections pending now, whose sector as received is
-- known, swap the two; the rest keep none pending. (Both databases read the old row on the right of `SET`.)
UPDATE submissions SET sector = sent_sector, sent_sector = sector
WHERE status <> 'draft'
  AND sent_sector IS NOT NULL
  AND sent_sector <> sector;
UPDATE submissions SET sent_sector = NULL
WHERE status = 'draft'
  OR sent_sector = sector;
ALTER TABLE submissions RENAME COLUMN sent_sector TO saved_sector;
