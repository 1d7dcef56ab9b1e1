-- The site type of a registry household (`registry::SiteType`): `home` (every household
-- imported before), `activity_room`, `clinic`, `school` or `greenhouse`. The import checks the
-- name; the rules read it as the device tag `site:{type}`, orders and reports through it.
ALTER TABLE households ADD COLUMN site_type TEXT NOT NULL DEFAULT 'home';
