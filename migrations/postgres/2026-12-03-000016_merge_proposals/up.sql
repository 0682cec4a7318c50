-- An officer's proposal to merge a duplicate organisation into another. Nothing moves until an organisation
-- administrator of each company accepts: membership and access are granted by the companies, not by the Program
-- Office. The second acceptance runs the merge in its own transaction. Either company's refusal, or an officer's
-- withdrawal, closes the proposal with nothing moved.
CREATE TABLE merge_proposals (
    id TEXT PRIMARY KEY NOT NULL,
    duplicate_id TEXT NOT NULL REFERENCES organisations(id),
    target_id TEXT NOT NULL REFERENCES organisations(id),
    reason TEXT NOT NULL,
    proposed_by TEXT NOT NULL REFERENCES users(id),
    proposed_at BIGINT NOT NULL,
    duplicate_accepted_by TEXT REFERENCES users(id),
    duplicate_accepted_at BIGINT,
    target_accepted_by TEXT REFERENCES users(id),
    target_accepted_at BIGINT,
    state TEXT NOT NULL CHECK (state IN ('open', 'merged', 'refused', 'withdrawn')),
    closed_by TEXT REFERENCES users(id),
    closed_at BIGINT,
    CHECK (duplicate_id <> target_id)
);
-- One open proposal per duplicate (the service checks first; this holds under any race).
CREATE UNIQUE INDEX merge_proposals_one_open ON merge_proposals(duplicate_id) WHERE state = 'open';
CREATE INDEX merge_proposals_target ON merge_proposals(target_id, state);
