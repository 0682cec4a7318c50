-- A cure may replace a file: the replaced one stays on record (and readable) beside the file that took its place,
-- and is destroyed with the submission like every other blob.
ALTER TABLE attachments ADD COLUMN replaced_by TEXT;
ALTER TABLE attachments ADD COLUMN replaced_at BIGINT;
