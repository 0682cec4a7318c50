-- Back to migration 25's meaning: `sector` as last saved, `sent_sector` as received.
ALTER TABLE submissions RENAME COLUMN saved_sector TO sent_sector;
UPDATE submissions SET sent_sector = sector, sector = sent_sector
WHERE sent_sector IS NOT NULL;
UPDATE submissions SET sent_sector = sector
WHERE status <> 'draft' AND sent_sector IS NULL;
DROP INDEX messages_side_created;
ALTER TABLE submissions DROP COLUMN sent_title_sealed;
