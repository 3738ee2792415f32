-- An edge says in its check-ins whether the control plane lists other edges than the ones it
-- runs with (edges agree on each class's home from one membership list, so it links with new
-- ones after a restart): 1 until it restarts with the current list.
ALTER TABLE edges ADD COLUMN restart_needed BIGINT NOT NULL DEFAULT 0;

-- Whether the edge says it can record a class: a session whose recording policy is `required`
-- is booked only on an edge that can (the seed's rule: it hard-fails rather than run
-- unrecorded). Edges report it when they check in.
ALTER TABLE edges ADD COLUMN recorder BIGINT NOT NULL DEFAULT 0;
