-- Leases: work that must run once across several instances (the blob sweep) is done by whichever instance holds
-- its lease. A holder renews it each round; one that stops (stopped, crashed) loses it once `expires_at` (Unix
-- seconds by the database's clock, which every instance shares) has passed, and another takes it over.
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
