ALTER TABLE message_reads DROP COLUMN last_mailed_seq;
