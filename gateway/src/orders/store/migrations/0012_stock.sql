-- Parts stock and backup units (`orders::stock`): what each township's service point
-- (`point:{township}`) and each technician's van (`van:{technician}`) holds of each part of the
-- unified price list, what is reserved for dispatched orders, the reorder level and since when
-- the line is low; every change as a move (the audit trail); parts reserved per order; parts
-- an order needed that nobody had (stock-outs); and the backup heaters lent while a
-- resident's own is repaired, each loan an order of its own.
CREATE TABLE stock (
    location TEXT NOT NULL, part_code TEXT NOT NULL, on_hand INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0, reorder_level INTEGER NOT NULL DEFAULT 0,
    low_since_ms INTEGER,
    PRIMARY KEY (location, part_code)
);
CREATE TABLE stock_moves (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, location TEXT NOT NULL,
    part_code TEXT NOT NULL, kind TEXT NOT NULL, quantity INTEGER NOT NULL,
    order_id INTEGER, actor TEXT NOT NULL, note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX stock_moves_location ON stock_moves (location, id);
CREATE INDEX stock_moves_order ON stock_moves (order_id, id);
CREATE TABLE stock_reservations (
    order_id INTEGER NOT NULL, location TEXT NOT NULL, part_code TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (order_id, location, part_code)
);
CREATE TABLE stock_outs (
    order_id INTEGER NOT NULL, part_code TEXT NOT NULL, quantity INTEGER NOT NULL,
    township TEXT NOT NULL, at_ms INTEGER NOT NULL, resolved_at_ms INTEGER,
    PRIMARY KEY (order_id, part_code)
);
CREATE INDEX stock_outs_at ON stock_outs (at_ms);
CREATE TABLE backup_units (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, township TEXT NOT NULL, state TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '', loan_order_id INTEGER, for_order_id INTEGER,
    household_id TEXT, lent_at_ms INTEGER, return_by_ms INTEGER
);
CREATE INDEX backup_units_township ON backup_units (township, state);
