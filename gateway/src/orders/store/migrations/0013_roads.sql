-- What dispatch knows about the roads (issue 21, item 5): the technicians' skills
-- (`technicians.csv` column `skills`: a row only for a technician whose skills are recorded,
-- space-separated `heat_pump`, `boiler`, `gas`) and the travel times from each township's
-- service point to its villages on a normal day (`travel.csv`), a mountain road flagged.
-- Road conditions (snow) live in `kv` under `dispatch.conditions`.
CREATE TABLE technician_skills (
    technician_id TEXT PRIMARY KEY,
    skills TEXT NOT NULL
);
CREATE TABLE travel_times (
    township_id TEXT NOT NULL,
    village_id TEXT NOT NULL,
    minutes INTEGER NOT NULL,
    mountain INTEGER NOT NULL,
    PRIMARY KEY (township_id, village_id)
);
CREATE INDEX travel_times_village ON travel_times (village_id);
