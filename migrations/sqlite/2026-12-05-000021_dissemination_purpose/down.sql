ALTER TABLE disseminations DROP COLUMN consent;
ALTER TABLE disseminations DROP COLUMN purpose;
