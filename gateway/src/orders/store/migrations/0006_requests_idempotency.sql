-- The intake desk and the field: every request a desk logs (诉求: its kind, channel and the
-- external ticket number such as the 12345 工单号, the caller, the order it opened or joined, the
-- answer that counts as its response), and the stored first result of each step sent with an
-- `Idempotency-Key`, so a retried POST answers the same without applying twice.
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
