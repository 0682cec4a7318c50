-- PCII.md: a submission not validated, or withdrawn, is returned or destroyed as the submitter chooses. The choice
-- (and, for a return, taking the package) now has a deadline, 30 days from the decision, the withdrawal or the choice
-- of a return; once it has passed without an answer the Program Office may destroy the content. Submissions already
-- waiting were told of no deadline: theirs runs 30 days from this migration (or from their last change, if later), so
-- that the 7-day reminder reaches them before anything may be destroyed.
ALTER TABLE submissions ADD COLUMN disposition_due_at BIGINT;
UPDATE submissions SET disposition_due_at = GREATEST(updated_at, CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)) + 30 * 86400
  WHERE (status = 'not_validated' AND (disposition IS NULL OR disposition = 'return'))
     OR (status = 'withdrawn' AND disposition = 'return');
-- The officers' home counts the lapsed ones on every load. Partial: only the submissions waiting on an answer have a
-- deadline (a destruction clears it), so the index stays small.
CREATE INDEX submissions_disposition_due ON submissions (disposition_due_at) WHERE disposition_due_at IS NOT NULL;
