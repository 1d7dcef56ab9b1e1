-- The cold-wave sweep (`prevention`): each visit or call it opened, one per unit and cold wave,
-- so a sweep run again (or after a restart) opens nothing twice; by township and time for the
-- daily capacity.
CREATE TABLE prevention_sweeps (
    device_id TEXT NOT NULL, wave_id TEXT NOT NULL, wave_coldest_ms INTEGER NOT NULL,
    township TEXT NOT NULL, action TEXT NOT NULL, order_id INTEGER NOT NULL REFERENCES orders (id),
    score INTEGER NOT NULL, opened_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, wave_id)
);
CREATE INDEX prevention_sweeps_opened ON prevention_sweeps (opened_at_ms, township);
