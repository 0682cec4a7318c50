-- Who affirmed the express statement and made the certifications when the submission (or its cure) was sent
-- (PCII.md: the portal records the submitter's affirmative act: who, when, which text version). The receipt names
-- this person, not whoever opens it. Rows sent before this column existed keep NULL: the audit log's entry of the
-- submission names who sent it.
ALTER TABLE submissions ADD COLUMN statement_affirmed_by TEXT;
