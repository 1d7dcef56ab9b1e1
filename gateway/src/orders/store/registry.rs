//! The registry in the store: import (all or nothing), the ids an import may refer to, and the
//! lookups routing and ingest make (devices, households, villages, teams, technicians, parts).

use super::households::{household_at, HOUSEHOLD_COLUMNS};
use super::*;
use crate::registry::people::join_phones;

impl Store {
    /// Ids already stored, for checking an import's references.
    pub fn known_ids(&self) -> Result<KnownIds, StoreError> {
        let ids = |table: &str| -> Result<HashSet<String>, StoreError> {
            let mut statement = self
                .connection
                .prepare(&format!("SELECT id FROM {table}"))?;
            let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok(KnownIds {
            townships: ids("townships")?,
            villages: ids("villages")?,
            vendors: ids("vendors")?,
            households: ids("households")?,
            teams: ids("teams")?,
            caretakers: self
                .connection
                .prepare("SELECT id FROM village_contacts WHERE role = 'caretaker'")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?,
        })
    }

    /// Stores a parsed import in one transaction: every row or none. Rows with an id that
    /// exists already replace it.
    pub fn import_registry(&mut self, data: &RegistryData) -> Result<ImportSummary, StoreError> {
        let tx = self.connection.savepoint()?;
        import_places(&tx, data)?;
        import_homes(&tx, data)?;
        import_staff(&tx, data)?;
        import_parts(&tx, data)?;
        super::roads::import_roads(&tx, data)?;
        tx.commit()?;
        Ok(ImportSummary {
            townships: data.townships.len(),
            villages: data.villages.len(),
            vendors: data.vendors.len(),
            households: data.households.len(),
            devices: data.devices.len(),
            teams: data.teams.len(),
            technicians: data.technicians.len(),
            contacts: data.contacts.len(),
            parts: data.parts.len(),
        })
    }

    /// The registry entries around a device.
    pub fn device_context(&self, device_id: &str) -> Result<Option<DeviceContext>, StoreError> {
        Ok(self
            .connection
            .query_row(
                &format!(
                    "SELECT d.id, d.household_id, d.kind, d.brand, d.model, d.vendor_id, d.installed_on, d.warranty_until,
                            {HOUSEHOLD_COLUMNS}, v.township_id, v.name
                     FROM devices d JOIN households h ON h.id = d.household_id JOIN villages v ON v.id = h.village_id
                     WHERE d.id = ?1"
                ),
                [device_id],
                |r| {
                    Ok(DeviceContext {
                        device: Device {
                            id: r.get(0)?,
                            household_id: r.get(1)?,
                            kind: r.get(2)?,
                            brand: r.get(3)?,
                            model: r.get(4)?,
                            vendor_id: r.get(5)?,
                            installed_on: r.get(6)?,
                            warranty_until: r.get(7)?,
                        },
                        household: household_at(r, 8)?,
                        village: Village {
                            id: r.get(9)?,
                            township_id: r.get(17)?,
                            name: r.get(18)?,
                        },
                    })
                },
            )
            .optional()?)
    }

    /// Every registered device with what the rules need: (id, kind, township, village,
    /// vulnerable, household, site type).
    pub fn registered_devices(&self) -> Result<Vec<RegisteredDevice>, StoreError> {
        self.registered(None)
    }

    /// One registered device as the rules see it, `None` when it is not registered.
    pub fn registered_device(&self, id: &str) -> Result<Option<RegisteredDevice>, StoreError> {
        Ok(self.registered(Some(id))?.into_iter().next())
    }

    /// Every registered device, or the one `only`.
    fn registered(&self, only: Option<&str>) -> Result<Vec<RegisteredDevice>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT d.id, d.kind, v.township_id, v.id, h.vulnerable, h.id, h.site_type
             FROM devices d JOIN households h ON h.id = d.household_id JOIN villages v ON v.id = h.village_id
             WHERE ?1 IS NULL OR d.id = ?1
             ORDER BY d.id",
        )?;
        let rows = statement.query_map([only], |r| {
            Ok(RegisteredDevice {
                id: r.get(0)?,
                kind: r.get(1)?,
                township: r.get(2)?,
                village: r.get(3)?,
                vulnerable: r.get(4)?,
                household: r.get(5)?,
                site_type: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The site type of every household that is not a home (reports group orders by it; a
    /// household missing here is a home).
    pub fn household_site_types(
        &self,
    ) -> Result<std::collections::HashMap<String, crate::registry::SiteType>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, site_type FROM households WHERE site_type <> 'home'")?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the tenant check of ingest needs: every household with its edge box (`None`: the
    /// box's id is the household's id), and every device with its household.
    pub fn tenant_directory(&self) -> Result<TenantRows, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, edge_box FROM households")?;
        let households = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut statement = self
            .connection
            .prepare("SELECT id, household_id FROM devices")?;
        let devices = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok((households, devices))
    }

    /// The order opened by, or linked to, an alert episode.
    pub fn order_of_episode(&self, episode_id: &str) -> Result<Option<OrderRow>, StoreError> {
        let id: Option<i64> = self
            .connection
            .query_row(
                "SELECT id FROM orders WHERE episode_id = ?1 UNION SELECT order_id FROM alert_links WHERE episode_id = ?1",
                [episode_id],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => self.order_row(id),
            None => Ok(None),
        }
    }

    /// Raises an order's priority.
    pub fn set_priority(&mut self, order_id: i64, priority: &str) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE orders SET priority = ?2 WHERE id = ?1",
            params![order_id, priority],
        )?;
        Ok(())
    }

    /// Restarts an order's SLA clocks at `at_ms` (its class changed): `sla_from_ms` is set and
    /// the warning and breach bits in `clear_flags` are cleared, so the new class's clocks can
    /// warn and breach on their own.
    pub fn restart_sla(
        &mut self,
        order_id: i64,
        at_ms: i64,
        clear_flags: i64,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE orders SET sla_from_ms = ?2, sla_flags = sla_flags & ~?3 WHERE id = ?1",
            params![order_id, at_ms, clear_flags],
        )?;
        Ok(())
    }

    /// Turns a call task into the repair order the evidence asks for: its category, and its
    /// priority when that is higher.
    pub fn upgrade_call_task(
        &mut self,
        order_id: i64,
        category: &str,
        priority: &str,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE orders SET category = ?2, priority = ?3 WHERE id = ?1",
            params![order_id, category, priority],
        )?;
        Ok(())
    }

    /// The township of a household (through its village).
    pub fn township_of_household(&self, household_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT v.township_id FROM households h JOIN villages v ON v.id = h.village_id WHERE h.id = ?1",
                [household_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A household's first registered device (complaints name a household).
    pub fn device_of_household(&self, household_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT id FROM devices WHERE household_id = ?1 ORDER BY id LIMIT 1",
                [household_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Teams of `kind` whose zone includes `township` (and of `vendor`, when given).
    pub fn teams_covering(
        &self,
        township: &str,
        kind: TeamKind,
        vendor: Option<&str>,
    ) -> Result<Vec<Team>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT t.id FROM teams t JOIN team_zones z ON z.team_id = t.id
             WHERE z.township_id = ?1 AND t.kind = ?2 AND (?3 IS NULL OR t.vendor_id = ?3) ORDER BY t.id",
        )?;
        let ids: Vec<String> = statement
            .query_map(params![township, kind.as_str(), vendor], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut teams = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(team) = self.team(&id)? {
                teams.push(team);
            }
        }
        Ok(teams)
    }

    /// One team with its zone.
    pub fn team(&self, id: &str) -> Result<Option<Team>, StoreError> {
        let row = self
            .connection
            .query_row(
                "SELECT id, name, kind, vendor_id, phone FROM teams WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, name, kind, vendor_id, phone)) = row else {
            return Ok(None);
        };
        let kind = TeamKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("team {id} has kind {kind:?}")))?;
        let mut statement = self.connection.prepare_cached(
            "SELECT township_id FROM team_zones WHERE team_id = ?1 ORDER BY township_id",
        )?;
        let townships = statement
            .query_map([&id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(Team {
            id,
            name,
            kind,
            vendor_id,
            phone,
            townships,
        }))
    }

    /// Every team.
    pub fn teams(&self) -> Result<Vec<Team>, StoreError> {
        let ids: Vec<String> = self
            .connection
            .prepare("SELECT id FROM teams ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut teams = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(team) = self.team(&id)? {
                teams.push(team);
            }
        }
        Ok(teams)
    }

    /// A team's technicians with their number of open orders.
    pub fn technician_loads(&self, team_id: &str) -> Result<Vec<(Technician, i64)>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT t.id, t.team_id, t.name, t.phone, t.home_village_id,
                    (SELECT COUNT(*) FROM orders o WHERE o.technician_id = t.id
                       AND o.state IN ('dispatched', 'accepted', 'on_site'))
             FROM technicians t WHERE t.team_id = ?1 ORDER BY t.id",
        )?;
        let rows = statement.query_map([team_id], |r| {
            Ok((
                Technician {
                    id: r.get(0)?,
                    team_id: r.get(1)?,
                    name: r.get(2)?,
                    phone: r.get(3)?,
                    home_village_id: r.get(4)?,
                },
                r.get(5)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The township of a village.
    pub fn township_of_village(&self, village_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT township_id FROM villages WHERE id = ?1",
                [village_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The contacts of a village in `role` (`caretaker`, `electrician`), by id.
    pub fn village_contacts(
        &self,
        village_id: &str,
        role: &str,
    ) -> Result<Vec<VillageContact>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT id, village_id, role, name, phone FROM village_contacts WHERE village_id = ?1 AND role = ?2 ORDER BY id",
        )?;
        let rows = statement.query_map([village_id, role], |r| {
            Ok(VillageContact {
                id: r.get(0)?,
                village_id: r.get(1)?,
                role: r.get(2)?,
                name: r.get(3)?,
                phone: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn townships(&self) -> Result<Vec<Township>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, name FROM townships ORDER BY id")?;
        let rows = statement.query_map([], |r| {
            Ok(Township {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn villages(&self, township: Option<&str>) -> Result<Vec<Village>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT id, township_id, name FROM villages WHERE (?1 IS NULL OR township_id = ?1) ORDER BY id",
        )?;
        let rows = statement.query_map([township], |r| {
            Ok(Village {
                id: r.get(0)?,
                township_id: r.get(1)?,
                name: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A part of the unified price list.
    pub fn part(&self, code: &str) -> Result<Option<Part>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT code, name, price_cents FROM parts WHERE code = ?1",
                [code],
                |r| {
                    Ok(Part {
                        code: r.get(0)?,
                        name: r.get(1)?,
                        price_cents: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn parts(&self) -> Result<Vec<Part>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT code, name, price_cents FROM parts ORDER BY code")?;
        let rows = statement.query_map([], |r| {
            Ok(Part {
                code: r.get(0)?,
                name: r.get(1)?,
                price_cents: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Upserts the townships, villages and vendors of an import.
fn import_places(connection: &Connection, data: &RegistryData) -> Result<(), StoreError> {
    for t in &data.townships {
        connection.execute(
                "INSERT INTO townships (id, name) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                params![t.id, t.name],
            )?;
    }
    for v in &data.villages {
        connection.execute(
                "INSERT INTO villages (id, township_id, name) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET township_id = excluded.township_id, name = excluded.name",
                params![v.id, v.township_id, v.name],
            )?;
    }
    for v in &data.vendors {
        connection.execute(
            "INSERT INTO vendors (id, name, period) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, period = excluded.period",
            params![v.id, v.name, v.period],
        )?;
    }
    Ok(())
}

/// Upserts the households and devices of an import.
fn import_homes(connection: &Connection, data: &RegistryData) -> Result<(), StoreError> {
    for h in &data.households {
        connection.execute(
                "INSERT INTO households (id, village_id, address, resident, phone, vulnerable, edge_box, caretaker_id, site_type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET village_id = excluded.village_id, address = excluded.address,
                 resident = excluded.resident, phone = excluded.phone, vulnerable = excluded.vulnerable,
                 edge_box = excluded.edge_box, caretaker_id = excluded.caretaker_id, site_type = excluded.site_type",
                params![h.id, h.village_id, h.address, h.resident, join_phones(&h.phones), h.vulnerable, h.edge_box, h.caretaker_id, h.site_type.as_str()],
            )?;
    }
    for d in &data.devices {
        connection.execute(
                "INSERT INTO devices (id, household_id, kind, brand, model, vendor_id, installed_on, warranty_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET household_id = excluded.household_id, kind = excluded.kind,
                 brand = excluded.brand, model = excluded.model, vendor_id = excluded.vendor_id,
                 installed_on = excluded.installed_on, warranty_until = excluded.warranty_until",
                params![d.id, d.household_id, d.kind, d.brand, d.model, d.vendor_id, d.installed_on, d.warranty_until],
            )?;
    }
    Ok(())
}

/// Upserts the teams (with their zones, replaced), technicians and village contacts of an
/// import.
fn import_staff(connection: &Connection, data: &RegistryData) -> Result<(), StoreError> {
    for t in &data.teams {
        connection.execute(
            "INSERT INTO teams (id, name, kind, vendor_id, phone) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                 vendor_id = excluded.vendor_id, phone = excluded.phone",
            params![t.id, t.name, t.kind.as_str(), t.vendor_id, t.phone],
        )?;
        connection.execute("DELETE FROM team_zones WHERE team_id = ?1", [&t.id])?;
        for township in &t.townships {
            connection.execute(
                "INSERT INTO team_zones (team_id, township_id) VALUES (?1, ?2)",
                params![t.id, township],
            )?;
        }
    }
    for t in &data.technicians {
        connection.execute(
                "INSERT INTO technicians (id, team_id, name, phone, home_village_id) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET team_id = excluded.team_id, name = excluded.name,
                 phone = excluded.phone, home_village_id = excluded.home_village_id",
                params![t.id, t.team_id, t.name, t.phone, t.home_village_id],
            )?;
    }
    for c in &data.contacts {
        connection.execute(
                "INSERT INTO village_contacts (id, village_id, role, name, phone) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET village_id = excluded.village_id, role = excluded.role,
                 name = excluded.name, phone = excluded.phone",
                params![c.id, c.village_id, c.role, c.name, c.phone],
            )?;
    }
    Ok(())
}

/// Upserts the unified price list of an import.
fn import_parts(connection: &Connection, data: &RegistryData) -> Result<(), StoreError> {
    for p in &data.parts {
        connection.execute(
                "INSERT INTO parts (code, name, price_cents) VALUES (?1, ?2, ?3)
                 ON CONFLICT (code) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents",
                params![p.code, p.name, p.price_cents],
            )?;
    }
    Ok(())
}
