-- An enrolled edge authenticates its heartbeats with a secret it was given at enrolment
-- (kept here as SHA-256, hex); NULL for an edge an admin registered by hand until it enrols.
ALTER TABLE edges ADD COLUMN secret_hash TEXT;
CREATE UNIQUE INDEX edges_secret ON edges (secret_hash);
