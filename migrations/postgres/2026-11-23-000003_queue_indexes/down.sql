DROP INDEX submissions_queue_org;
DROP INDEX submissions_sector;
CREATE INDEX submissions_sector ON submissions(sector, status, received_at);
DROP INDEX submissions_queue_cure;
DROP INDEX submissions_queue_receipt;
DROP INDEX submissions_queue;
CREATE INDEX submissions_queue ON submissions(status, received_at);
