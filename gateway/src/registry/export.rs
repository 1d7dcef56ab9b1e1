//! The registry written back as the CSV files an import reads (`GET /api/v1/registry/export`
//! and the demo's registry folder): every column an import takes, so an export imports to the
//! same rows.

use super::{parse_date, people, warranty_until, Device, RegistryData};

/// Writes `data` as the CSV files [`super::parse`] reads back to the same rows: the registry
/// export, and the demo's registry folder.
pub fn to_csv_files(data: &RegistryData) -> Vec<(&'static str, String)> {
    vec![
        ("townships.csv", townships(data)),
        ("villages.csv", villages(data)),
        ("vendors.csv", vendors(data)),
        ("households.csv", households(data)),
        ("devices.csv", devices(data)),
        ("teams.csv", teams(data)),
        ("technicians.csv", technicians(data)),
        ("contacts.csv", contacts(data)),
        ("parts.csv", parts(data)),
        ("travel.csv", travel(data)),
    ]
}

/// A CSV file of `header` and `rows`.
fn csv<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(header);
    for row in rows {
        let _ = writer.write_record(&row);
    }
    writer
        .into_inner()
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

/// `townships.csv`.
fn townships(data: &RegistryData) -> String {
    csv(
        ["id", "name"],
        data.townships
            .iter()
            .map(|t| [t.id.clone(), t.name.clone()]),
    )
}

/// `villages.csv`.
fn villages(data: &RegistryData) -> String {
    csv(
        ["id", "township_id", "name"],
        data.villages
            .iter()
            .map(|v| [v.id.clone(), v.township_id.clone(), v.name.clone()]),
    )
}

/// `vendors.csv`.
fn vendors(data: &RegistryData) -> String {
    csv(
        ["id", "name", "period"],
        data.vendors.iter().map(|v| {
            [
                v.id.clone(),
                v.name.clone(),
                v.period.clone().unwrap_or_default(),
            ]
        }),
    )
}

/// `households.csv`.
fn households(data: &RegistryData) -> String {
    csv(
        [
            "id",
            "village_id",
            "address",
            "resident",
            "phone",
            "vulnerable",
            "edge_box",
            "caretaker_id",
            "site_type",
        ],
        data.households.iter().map(|h| {
            [
                h.id.clone(),
                h.village_id.clone(),
                h.address.clone(),
                h.resident.clone(),
                people::join_phones(&h.phones),
                h.vulnerable.to_string(),
                h.edge_box.clone().unwrap_or_default(),
                h.caretaker_id.clone().unwrap_or_default(),
                h.site_type.as_str().to_owned(),
            ]
        }),
    )
}

/// `devices.csv`.
fn devices(data: &RegistryData) -> String {
    csv(
        [
            "id",
            "household_id",
            "kind",
            "brand",
            "model",
            "vendor_id",
            "installed_on",
            "warranty_years",
        ],
        data.devices.iter().map(|d| {
            [
                d.id.clone(),
                d.household_id.clone(),
                d.kind.clone(),
                d.brand.clone(),
                d.model.clone(),
                d.vendor_id.clone(),
                d.installed_on.clone(),
                warranty_years(d).to_string(),
            ]
        }),
    )
}

/// `teams.csv`.
fn teams(data: &RegistryData) -> String {
    csv(
        ["id", "name", "kind", "vendor_id", "phone", "townships"],
        data.teams.iter().map(|t| {
            [
                t.id.clone(),
                t.name.clone(),
                t.kind.as_str().to_owned(),
                t.vendor_id.clone().unwrap_or_default(),
                t.phone.clone(),
                t.townships.join(";"),
            ]
        }),
    )
}

/// `technicians.csv`.
fn technicians(data: &RegistryData) -> String {
    csv(
        [
            "id",
            "team_id",
            "name",
            "phone",
            "home_village_id",
            "skills",
        ],
        data.technicians.iter().map(|t| {
            [
                t.id.clone(),
                t.team_id.clone(),
                t.name.clone(),
                t.phone.clone(),
                t.home_village_id.clone().unwrap_or_default(),
                data.roads
                    .skills
                    .get(&t.id)
                    .map(|skills| super::roads::join_skills(skills))
                    .unwrap_or_default(),
            ]
        }),
    )
}

/// `travel.csv`.
fn travel(data: &RegistryData) -> String {
    csv(
        ["township_id", "village_id", "minutes", "mountain"],
        data.roads.travel.iter().map(|t| {
            [
                t.township_id.clone(),
                t.village_id.clone(),
                t.minutes.to_string(),
                t.mountain.to_string(),
            ]
        }),
    )
}

/// `contacts.csv`.
fn contacts(data: &RegistryData) -> String {
    csv(
        ["id", "village_id", "role", "name", "phone"],
        data.contacts.iter().map(|c| {
            [
                c.id.clone(),
                c.village_id.clone(),
                c.role.clone(),
                c.name.clone(),
                c.phone.clone(),
            ]
        }),
    )
}

/// `parts.csv`, prices in CNY with two decimals.
fn parts(data: &RegistryData) -> String {
    csv(
        ["code", "name", "price_cny"],
        data.parts.iter().map(|p| {
            [
                p.code.clone(),
                p.name.clone(),
                format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100),
            ]
        }),
    )
}

/// The warranty in years that gives `device` its stored warranty end (5 when the dates do not
/// tell, which is what an import without the column assumes).
fn warranty_years(device: &Device) -> i32 {
    let (Some(installed), Some((end_year, _, _))) = (
        parse_date(&device.installed_on),
        parse_date(&device.warranty_until),
    ) else {
        return 5;
    };
    let difference = end_year - installed.0;
    [difference, difference + 1]
        .into_iter()
        .find(|years| {
            (0..=30).contains(years) && warranty_until(installed, *years) == device.warranty_until
        })
        .unwrap_or(5)
}
