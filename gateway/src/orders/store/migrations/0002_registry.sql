-- The registry (townships, villages, vendors, households, devices, teams and their zones,
-- technicians, village contacts, the parts price list); the orders' links to it and their
-- lifecycle columns; alerts linked to an open order; parts used; complaints.
CREATE TABLE townships (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE villages (
    id TEXT PRIMARY KEY, township_id TEXT NOT NULL REFERENCES townships (id), name TEXT NOT NULL
);
CREATE TABLE vendors (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE households (
    id TEXT PRIMARY KEY, village_id TEXT NOT NULL REFERENCES villages (id), address TEXT NOT NULL,
    resident TEXT NOT NULL, phone TEXT NOT NULL, vulnerable INTEGER NOT NULL
);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, household_id TEXT NOT NULL REFERENCES households (id), kind TEXT NOT NULL,
    brand TEXT NOT NULL, model TEXT NOT NULL, vendor_id TEXT NOT NULL REFERENCES vendors (id),
    installed_on TEXT NOT NULL, warranty_until TEXT NOT NULL
);
CREATE INDEX devices_household ON devices (household_id);
CREATE TABLE teams (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
    vendor_id TEXT REFERENCES vendors (id), phone TEXT NOT NULL
);
CREATE TABLE team_zones (
    team_id TEXT NOT NULL REFERENCES teams (id), township_id TEXT NOT NULL REFERENCES townships (id),
    PRIMARY KEY (team_id, township_id)
);
CREATE TABLE technicians (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL REFERENCES teams (id), name TEXT NOT NULL,
    phone TEXT NOT NULL, home_village_id TEXT REFERENCES villages (id)
);
CREATE TABLE village_contacts (
    id TEXT PRIMARY KEY, village_id TEXT NOT NULL REFERENCES villages (id), role TEXT NOT NULL,
    name TEXT NOT NULL, phone TEXT NOT NULL
);
CREATE TABLE parts (code TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);

ALTER TABLE orders ADD COLUMN household_id TEXT;
ALTER TABLE orders ADD COLUMN village_id TEXT;
ALTER TABLE orders ADD COLUMN vendor_id TEXT;
ALTER TABLE orders ADD COLUMN pre_emptive INTEGER NOT NULL DEFAULT 1;
ALTER TABLE orders ADD COLUMN in_warranty INTEGER;
ALTER TABLE orders ADD COLUMN team_id TEXT;
ALTER TABLE orders ADD COLUMN technician_id TEXT;
ALTER TABLE orders ADD COLUMN dispatched_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN accepted_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN on_site_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN resolved_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN closed_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN satisfaction INTEGER;
ALTER TABLE orders ADD COLUMN parts_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN resident_pays_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN misuse INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN sla_flags INTEGER NOT NULL DEFAULT 0;
CREATE INDEX orders_created ON orders (created_at_ms);
CREATE INDEX orders_team ON orders (team_id, state);
CREATE INDEX orders_household ON orders (household_id, state);

CREATE TABLE alert_links (
    episode_id TEXT PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders (id)
);
CREATE TABLE order_parts (
    order_id INTEGER NOT NULL REFERENCES orders (id), part_code TEXT NOT NULL,
    quantity INTEGER NOT NULL, price_cents INTEGER NOT NULL
);
CREATE TABLE complaints (
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, device_id TEXT, household_id TEXT,
    received_at_ms INTEGER NOT NULL, text TEXT NOT NULL,
    order_id INTEGER NOT NULL REFERENCES orders (id), linked INTEGER NOT NULL
);
CREATE INDEX complaints_order ON complaints (order_id);
