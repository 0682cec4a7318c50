-- PCII.md: a submission not validated, or withdrawn, is returned or destroyed as the submitter chooses. The choice
-- (and, for a return, taking the package) now has a deadline, 30 days from the decision, the withdrawal or the choice
-- of a return; once it has passed without an answer the Program Office may destroy the content. Submissions already
-- waiting get their 30 days from their last change.
ALTER TABLE submissions ADD COLUMN disposition_due_at BIGINT;
UPDATE submissions SET disposition_due_at = updated_at + 30 * 86400
  WHERE (status = 'not_validated' AND (disposition IS NULL OR disposition = 'return'))
     OR (status = 'withdrawn' AND disposition = 'return');
