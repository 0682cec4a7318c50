-- The officer's queue (src/models/queue.rs). Each filter and order it offers is served by one of these indexes,
-- in order or over a small subset, and every column the queue filters or sorts on is in the index, so a page
-- is picked from index entries alone and only its own rows are read from the table.

-- One status, or both open ones with the received first (the notice clock): receipt order within a status.
DROP INDEX submissions_queue;
CREATE INDEX submissions_queue ON submissions(status DESC, received_at, id, cure_due_at);
-- Both open statuses in receipt order, oldest or newest first, overdue or not.
CREATE INDEX submissions_queue_receipt ON submissions(received_at, id, status, cure_due_at);
-- The cure clock: defective submissions by cure deadline.
CREATE INDEX submissions_queue_cure ON submissions(status, cure_due_at, received_at, id);
-- One sector's, or one organisation's, open submissions (each also carries the other filter).
DROP INDEX submissions_sector;
CREATE INDEX submissions_sector ON submissions(sector, status, received_at, id, cure_due_at, organisation_id);
CREATE INDEX submissions_queue_org ON submissions(organisation_id, status, received_at, id, cure_due_at, sector);
