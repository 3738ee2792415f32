-- An edge says in its check-ins whether the control plane lists other edges than the ones it
-- runs with (edges agree on each class's home from one membership list, so it links with new
-- ones after a restart): 1 until it restarts with the current list.
ALTER TABLE edges ADD COLUMN restart_needed BIGINT NOT NULL DEFAULT 0;
