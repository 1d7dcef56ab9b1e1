-- Inspection campaigns (取暖季前巡检, `orders::campaigns`): each campaign (window, scope, daily limit
-- per technician, tries, checklists as JSON), and each unit's inspection in it (its inspection
-- order, risk score and reasons, day plan, tries, outcome, checklist answers, the repair order
-- a finding opened). One inspection per unit and campaign.
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
