-- Households with people: `phone` holds one to three numbers in normal form separated by `;`
-- (earlier rows are normalised here when they are a bare number once spaces, dashes and `+86`
-- are gone; anything else is kept as it was); a household may name its own caretaker (a
-- `village_contacts` id; empty: the village's caretaker); indexes for the household search and
-- for finding a village's caretaker.
ALTER TABLE households ADD COLUMN caretaker_id TEXT;
UPDATE households
   SET phone = REPLACE(REPLACE(REPLACE(phone, ' ', ''), '-', ''), '+86', '')
 WHERE REPLACE(REPLACE(REPLACE(phone, ' ', ''), '-', ''), '+86', '') NOT GLOB '*[^0-9]*'
   AND REPLACE(REPLACE(REPLACE(phone, ' ', ''), '-', ''), '+86', '') <> '';
CREATE INDEX households_village ON households (village_id);
CREATE INDEX village_contacts_village ON village_contacts (village_id, role, id);
