//! The registry import's readers, one per CSV file: each checks its rows and the ids they
//! name, and adds them to the batch.

use std::collections::HashMap;

use super::*;

/// `townships.csv` into `data`, its ids into `known`.
pub(super) fn parse_townships(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
) -> Result<(), ImportError> {
    let t = Table::parse("townships.csv", text, &["id", "name"])?;
    for (line, r) in &t.rows {
        let row = Township {
            id: t.id(*line, r, "id")?,
            name: t.text(*line, r, "name")?,
        };
        known.townships.insert(row.id.clone());
        data.townships.push(row);
    }
    Ok(())
}

/// `villages.csv` into `data`, its ids into `known`.
pub(super) fn parse_villages(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
) -> Result<(), ImportError> {
    let t = Table::parse("villages.csv", text, &["id", "township_id", "name"])?;
    for (line, r) in &t.rows {
        let row = Village {
            id: t.id(*line, r, "id")?,
            township_id: t.text(*line, r, "township_id")?,
            name: t.text(*line, r, "name")?,
        };
        if !known.townships.contains(&row.township_id) {
            return Err(t.error(
                *line,
                "township_id",
                format!("unknown township {:?}", row.township_id),
            ));
        }
        known.villages.insert(row.id.clone());
        data.villages.push(row);
    }
    Ok(())
}

/// `vendors.csv` into `data`, its ids into `known`.
pub(super) fn parse_vendors(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
) -> Result<(), ImportError> {
    let t = Table::parse("vendors.csv", text, &["id", "name"])?;
    for (line, r) in &t.rows {
        let row = Vendor {
            id: t.id(*line, r, "id")?,
            name: t.text(*line, r, "name")?,
            period: match t.optional(r, "period") {
                Some(_) => Some(t.id(*line, r, "period")?),
                None => None,
            },
        };
        known.vendors.insert(row.id.clone());
        data.vendors.push(row);
    }
    Ok(())
}

/// `households.csv` into `data`, its ids into `known`.
pub(super) fn parse_households(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
    caretaker_refs: &mut Vec<(ImportError, String)>,
) -> Result<(), ImportError> {
    let t = Table::parse(
        "households.csv",
        text,
        &[
            "id",
            "village_id",
            "address",
            "resident",
            "phone",
            "vulnerable",
        ],
    )?;
    let mut edge_boxes: HashMap<String, String> = HashMap::new();
    for (line, r) in &t.rows {
        let row = household_row(&t, *line, r, caretaker_refs)?;
        if let Some(other) = edge_boxes.insert(row.edge_box_id().to_owned(), row.id.clone()) {
            return Err(t.error(
                *line,
                if row.edge_box.is_some() {
                    "edge_box"
                } else {
                    "id"
                },
                format!(
                    "edge box {:?} is already the box of household {other:?}",
                    row.edge_box_id()
                ),
            ));
        }
        if !known.villages.contains(&row.village_id) {
            return Err(t.error(
                *line,
                "village_id",
                format!("unknown village {:?}", row.village_id),
            ));
        }
        known.households.insert(row.id.clone());
        data.households.push(row);
    }
    Ok(())
}

/// One row of `households.csv`; a caretaker it names is checked once contacts.csv is in.
fn household_row(
    t: &Table,
    line: u64,
    r: &csv::StringRecord,
    caretaker_refs: &mut Vec<(ImportError, String)>,
) -> Result<Household, ImportError> {
    let vulnerable_text = t.optional(r, "vulnerable").unwrap_or_default();
    let phones = t.text(line, r, "phone")?;
    let caretaker_id = match t.optional(r, "caretaker_id") {
        Some(_) => Some(t.id(line, r, "caretaker_id")?),
        None => None,
    };
    if let Some(caretaker) = &caretaker_id {
        caretaker_refs.push((
            t.error(line, "caretaker_id", String::new()),
            caretaker.clone(),
        ));
    }
    Ok(Household {
        id: t.id(line, r, "id")?,
        village_id: t.text(line, r, "village_id")?,
        address: t.bounded(line, r, "address", people::MAX_ADDRESS_CHARS)?,
        resident: t.bounded(line, r, "resident", people::MAX_NAME_CHARS)?,
        phones: people::parse_phones(&phones).map_err(|message| t.error(line, "phone", message))?,
        caretaker_id,
        vulnerable: parse_bool(&vulnerable_text).ok_or_else(|| {
            t.error(
                line,
                "vulnerable",
                format!("{vulnerable_text:?} is not true/false"),
            )
        })?,
        edge_box: match t.optional(r, "edge_box") {
            Some(_) => Some(t.id(line, r, "edge_box")?),
            None => None,
        },
        site_type: match t.optional(r, "site_type") {
            Some(text) => SiteType::parse(&text).ok_or_else(|| {
                t.error(
                    line,
                    "site_type",
                    format!(
                        "{text:?} is not one of {}",
                        SiteType::ALL.map(SiteType::as_str).join(", ")
                    ),
                )
            })?,
            None => SiteType::Home,
        },
    })
}

/// `devices.csv` into `data`, its ids into `known`.
pub(super) fn parse_devices(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
) -> Result<(), ImportError> {
    let t = Table::parse(
        "devices.csv",
        text,
        &[
            "id",
            "household_id",
            "kind",
            "brand",
            "model",
            "vendor_id",
            "installed_on",
        ],
    )?;
    for (line, r) in &t.rows {
        let kind = t.text(*line, r, "kind")?;
        if kind != "heat_pump" && kind != "gas_boiler" {
            return Err(t.error(
                *line,
                "kind",
                format!("{kind:?} is not heat_pump or gas_boiler"),
            ));
        }
        let installed_on = t.text(*line, r, "installed_on")?;
        let date = parse_date(&installed_on).ok_or_else(|| {
            t.error(
                *line,
                "installed_on",
                format!("{installed_on:?} is not a date YYYY-MM-DD"),
            )
        })?;
        let years = match t.optional(r, "warranty_years") {
            Some(text) => text
                .parse::<i32>()
                .ok()
                .filter(|y| (0..=30).contains(y))
                .ok_or_else(|| {
                    t.error(
                        *line,
                        "warranty_years",
                        format!("{text:?} is not a number of years 0..=30"),
                    )
                })?,
            None => 5,
        };
        let row = Device {
            id: t.id(*line, r, "id")?,
            household_id: t.text(*line, r, "household_id")?,
            kind,
            brand: t.text(*line, r, "brand")?,
            model: t.text(*line, r, "model")?,
            vendor_id: t.text(*line, r, "vendor_id")?,
            warranty_until: warranty_until(date, years),
            installed_on,
        };
        if !known.households.contains(&row.household_id) {
            return Err(t.error(
                *line,
                "household_id",
                format!("unknown household {:?}", row.household_id),
            ));
        }
        if !known.vendors.contains(&row.vendor_id) {
            return Err(t.error(
                *line,
                "vendor_id",
                format!("unknown vendor {:?}", row.vendor_id),
            ));
        }
        data.devices.push(row);
    }
    Ok(())
}

/// `teams.csv` into `data`, its ids into `known`.
pub(super) fn parse_teams(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
) -> Result<(), ImportError> {
    let t = Table::parse(
        "teams.csv",
        text,
        &["id", "name", "kind", "phone", "townships"],
    )?;
    for (line, r) in &t.rows {
        let kind_text = t.text(*line, r, "kind")?;
        let kind = TeamKind::parse(&kind_text).ok_or_else(|| {
            t.error(
                *line,
                "kind",
                format!("{kind_text:?} is not vendor, third_party, power_utility or gas_utility"),
            )
        })?;
        let vendor_id = t.optional(r, "vendor_id");
        match (&kind, &vendor_id) {
            (TeamKind::Vendor, None) => {
                return Err(t.error(*line, "vendor_id", "a vendor team needs its vendor".into()))
            }
            (_, Some(vendor)) if !known.vendors.contains(vendor) => {
                return Err(t.error(*line, "vendor_id", format!("unknown vendor {vendor:?}")))
            }
            _ => {}
        }
        let townships: Vec<String> = t
            .text(*line, r, "townships")?
            .split(';')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = townships.iter().find(|s| !known.townships.contains(*s)) {
            return Err(t.error(*line, "townships", format!("unknown township {bad:?}")));
        }
        let row = Team {
            id: t.id(*line, r, "id")?,
            name: t.text(*line, r, "name")?,
            kind,
            vendor_id,
            phone: t.text(*line, r, "phone")?,
            townships,
        };
        known.teams.insert(row.id.clone());
        data.teams.push(row);
    }
    Ok(())
}

/// `technicians.csv` into `data`, its ids into `known`.
pub(super) fn parse_technicians(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
) -> Result<(), ImportError> {
    let t = Table::parse("technicians.csv", text, &["id", "team_id", "name", "phone"])?;
    for (line, r) in &t.rows {
        let row = Technician {
            id: t.id(*line, r, "id")?,
            team_id: t.text(*line, r, "team_id")?,
            name: t.text(*line, r, "name")?,
            phone: t.text(*line, r, "phone")?,
            home_village_id: t.optional(r, "home_village_id"),
        };
        if !known.teams.contains(&row.team_id) {
            return Err(t.error(*line, "team_id", format!("unknown team {:?}", row.team_id)));
        }
        if let Some(village) = &row.home_village_id {
            if !known.villages.contains(village) {
                return Err(t.error(
                    *line,
                    "home_village_id",
                    format!("unknown village {village:?}"),
                ));
            }
        }
        data.technicians.push(row);
    }
    Ok(())
}

/// `contacts.csv` into `data`, its ids into `known`.
pub(super) fn parse_contacts(
    text: &str,
    data: &mut RegistryData,
    known: &mut KnownIds,
) -> Result<(), ImportError> {
    let t = Table::parse(
        "contacts.csv",
        text,
        &["id", "village_id", "role", "name", "phone"],
    )?;
    for (line, r) in &t.rows {
        let row = VillageContact {
            id: t.id(*line, r, "id")?,
            village_id: t.text(*line, r, "village_id")?,
            role: t.text(*line, r, "role")?,
            name: t.text(*line, r, "name")?,
            phone: t.text(*line, r, "phone")?,
        };
        if row.role != "caretaker" && row.role != "electrician" {
            return Err(t.error(
                *line,
                "role",
                format!("{:?} is not caretaker or electrician", row.role),
            ));
        }
        if !known.villages.contains(&row.village_id) {
            return Err(t.error(
                *line,
                "village_id",
                format!("unknown village {:?}", row.village_id),
            ));
        }
        if row.role == "caretaker" {
            known.caretakers.insert(row.id.clone());
        } else {
            known.caretakers.remove(&row.id);
        }
        data.contacts.push(row);
    }
    Ok(())
}

/// `parts.csv` into `data`.
pub(super) fn parse_parts(text: &str, data: &mut RegistryData) -> Result<(), ImportError> {
    let t = Table::parse("parts.csv", text, &["code", "name", "price_cny"])?;
    for (line, r) in &t.rows {
        let price = t.text(*line, r, "price_cny")?;
        let price_cents = parse_price(&price).ok_or_else(|| {
            t.error(
                *line,
                "price_cny",
                format!("{price:?} is not a price in yuan such as 120.50"),
            )
        })?;
        data.parts.push(Part {
            code: t.id(*line, r, "code")?,
            name: t.text(*line, r, "name")?,
            price_cents,
        });
    }
    Ok(())
}
