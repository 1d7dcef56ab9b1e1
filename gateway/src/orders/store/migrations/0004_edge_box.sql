-- The edge box a household's devices report through.
ALTER TABLE households ADD COLUMN edge_box TEXT;
CREATE UNIQUE INDEX households_edge_box ON households (edge_box);
