-- PCII.md: PCII may not be used for a regulatory purpose without the written consent of both the Program Manager and
-- the submitter. A release records its purpose; one for a regulatory purpose records where both written consents are
-- on file (`consent`, sealed with the submission's data key like the release's other details). Releases recorded
-- before keep the purpose every release had until then.
ALTER TABLE disseminations ADD COLUMN purpose TEXT NOT NULL DEFAULT 'homeland_security';
ALTER TABLE disseminations ADD COLUMN consent TEXT;
