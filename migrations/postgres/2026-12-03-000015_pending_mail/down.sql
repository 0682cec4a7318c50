DROP TABLE pending_mail;
