//! The store's schema: numbered migrations, applied in order once each by [`super::Store::open`].

/// Migrations, applied in order once each; never edit a released one, add a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE alerts (
    episode_id      TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    township        TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    summary         TEXT NOT NULL,
    fired_at_ms     INTEGER NOT NULL,
    resolved_at_ms  INTEGER
);
CREATE INDEX alerts_active ON alerts (resolved_at_ms, fired_at_ms);
CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    episode_id      TEXT UNIQUE REFERENCES alerts (episode_id),
    device_id       TEXT NOT NULL,
    township        TEXT NOT NULL,
    category        TEXT NOT NULL,
    priority        TEXT NOT NULL,
    source          TEXT NOT NULL,
    summary         TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    state           TEXT NOT NULL
);
CREATE INDEX orders_device ON orders (device_id, state);
CREATE TABLE order_events (
    id              INTEGER PRIMARY KEY,
    order_id        INTEGER NOT NULL REFERENCES orders (id),
    at_ms           INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    note            TEXT NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE TABLE kv (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL
);
"#,
    r#"
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
"#,
    r#"
CREATE INDEX orders_technician ON orders (technician_id, state);
CREATE INDEX orders_episode_links ON alert_links (order_id);
"#,
    r#"
ALTER TABLE households ADD COLUMN edge_box TEXT;
CREATE UNIQUE INDEX households_edge_box ON households (edge_box);
"#,
    // Households with people: `phone` holds one to three numbers in normal form separated by
    // `;` (earlier rows are normalised here when they are a bare number once spaces, dashes
    // and `+86` are gone; anything else is kept as it was); a household may name its own
    // caretaker (a `village_contacts` id; empty: the village's caretaker); indexes for the
    // household search and for finding a village's caretaker.
    r#"
ALTER TABLE households ADD COLUMN caretaker_id TEXT;
UPDATE households
   SET phone = REPLACE(REPLACE(REPLACE(phone, ' ', ''), '-', ''), '+86', '')
 WHERE REPLACE(REPLACE(REPLACE(phone, ' ', ''), '-', ''), '+86', '') NOT GLOB '*[^0-9]*'
   AND REPLACE(REPLACE(REPLACE(phone, ' ', ''), '-', ''), '+86', '') <> '';
CREATE INDEX households_village ON households (village_id);
CREATE INDEX village_contacts_village ON village_contacts (village_id, role, id);
"#,
    // The intake desk and the field: every request a desk logs (诉求: its kind, channel and the
    // external ticket number such as the 12345 工单号, the caller, the order it opened or joined,
    // the answer that counts as its response), and the stored first result of each step sent
    // with an `Idempotency-Key`, so a retried POST answers the same without applying twice.
    r#"
CREATE TABLE requests (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, channel TEXT NOT NULL, ticket TEXT,
    household_id TEXT, device_id TEXT, village_id TEXT, township TEXT NOT NULL,
    caller_name TEXT NOT NULL, caller_phone TEXT NOT NULL, text TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL, taken_by TEXT NOT NULL,
    order_id INTEGER REFERENCES orders (id), linked INTEGER NOT NULL,
    answer TEXT, answered_at_ms INTEGER, answered_by TEXT
);
CREATE INDEX requests_household ON requests (household_id, received_at_ms);
CREATE INDEX requests_received ON requests (received_at_ms);
CREATE UNIQUE INDEX requests_ticket ON requests (channel, ticket) WHERE ticket IS NOT NULL;
CREATE TABLE idempotent_steps (
    principal TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL, body TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotent_steps_at ON idempotent_steps (at_ms);
"#,
    // SLA classes: when an order's class changes after creation (a maintenance finding that
    // became urgent, a call task that became a repair), its new clocks run from this time
    // (NULL: from creation).
    r#"
ALTER TABLE orders ADD COLUMN sla_from_ms INTEGER;
"#,
    // The cold-wave sweep (`prevention`): each visit or call it opened, one per unit and cold
    // wave, so a sweep run again (or after a restart) opens nothing twice; by township and time
    // for the daily capacity.
    r#"
CREATE TABLE prevention_sweeps (
    device_id TEXT NOT NULL, wave_id TEXT NOT NULL, wave_coldest_ms INTEGER NOT NULL,
    township TEXT NOT NULL, action TEXT NOT NULL, order_id INTEGER NOT NULL REFERENCES orders (id),
    score INTEGER NOT NULL, opened_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, wave_id)
);
CREATE INDEX prevention_sweeps_opened ON prevention_sweeps (opened_at_ms, township);
"#,
    // Inspection campaigns (取暖季前巡检, `orders::campaigns`): each campaign (window, scope,
    // daily limit per technician, tries, checklists as JSON), and each unit's inspection in it
    // (its inspection order, risk score and reasons, day plan, tries, outcome, checklist answers,
    // the repair order a finding opened). One inspection per unit and campaign.
    r#"
CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, start_date TEXT NOT NULL, end_date TEXT NOT NULL,
    scope TEXT NOT NULL, per_technician_per_day INTEGER NOT NULL, max_tries INTEGER NOT NULL,
    checklists TEXT NOT NULL, created_at_ms INTEGER NOT NULL, created_by TEXT NOT NULL
);
CREATE TABLE inspections (
    id INTEGER PRIMARY KEY, campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    order_id INTEGER NOT NULL REFERENCES orders (id), device_id TEXT NOT NULL,
    household_id TEXT NOT NULL, village_id TEXT NOT NULL, township TEXT NOT NULL,
    vendor_id TEXT NOT NULL, kind TEXT NOT NULL, in_warranty INTEGER NOT NULL,
    score INTEGER NOT NULL, reasons TEXT NOT NULL, rank INTEGER NOT NULL,
    team_id TEXT, technician_id TEXT, planned_date TEXT, tries INTEGER NOT NULL,
    status TEXT NOT NULL, answers TEXT NOT NULL, note TEXT NOT NULL,
    repair_order_id INTEGER REFERENCES orders (id), completed_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (campaign_id, device_id)
);
CREATE INDEX inspections_campaign ON inspections (campaign_id, rank);
CREATE INDEX inspections_day ON inspections (status, technician_id, planned_date);
CREATE INDEX inspections_team ON inspections (team_id, status);
CREATE UNIQUE INDEX inspections_order ON inspections (order_id);
"#,
    // Vendor delegation (`orders::delegation`): a vendor's contract period (同期: the bid round
    // it won; delegation is only between vendors of one period), and the ledger of delegations:
    // who handed which order to whom, the call-out fee fixed then, and when it was voided.
    r#"
ALTER TABLE vendors ADD COLUMN period TEXT;
CREATE TABLE vendor_delegations (
    id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders (id),
    at_ms INTEGER NOT NULL, actor TEXT NOT NULL, township TEXT NOT NULL, period TEXT NOT NULL,
    from_vendor TEXT NOT NULL, from_team TEXT NOT NULL, to_vendor TEXT NOT NULL,
    to_team TEXT NOT NULL, reason TEXT NOT NULL, fee_cents INTEGER NOT NULL,
    voided_at_ms INTEGER, void_reason TEXT
);
CREATE INDEX vendor_delegations_order ON vendor_delegations (order_id, id);
CREATE INDEX vendor_delegations_from ON vendor_delegations (from_vendor, at_ms);
CREATE INDEX vendor_delegations_to ON vendor_delegations (to_vendor, at_ms);
"#,
];
