-- The message the person was last mailed about in the thread (0: none). A message mails a person of the other side
-- only when it has read everything it was mailed about (`last_mailed_seq <= last_read_seq`): one mail per unread
-- stretch, however many messages the stretch holds.
ALTER TABLE message_reads ADD COLUMN last_mailed_seq BIGINT NOT NULL DEFAULT 0;
