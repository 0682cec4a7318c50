DROP TABLE message_reads;
DROP TABLE message_files;
DROP TABLE messages;
