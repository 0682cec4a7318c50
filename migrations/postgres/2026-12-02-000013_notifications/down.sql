ALTER TABLE users DROP COLUMN notifications_off;
DROP TABLE notifications_sent;
