-- Alerts, work orders with their events and a key-value table: the first schema.
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
