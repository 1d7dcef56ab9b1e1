//! The registry: townships, villages, households, devices, vendors, teams with their
//! responsibility zones, technicians, village caretakers and electricians, and the unified parts
//! price list. Imported from CSV files (one per table) with errors that name file, line and
//! column; the import is applied in one transaction or not at all (see `orders::store`).

pub mod demo;
mod export;
pub mod people;
pub mod roads;
mod site;
mod tables;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use site::SiteType;
use tables::*;

pub use export::to_csv_files;
pub use roads::{RoadData, Skill, TravelTime};

/// A township (镇/乡), the unit responsibility zones are drawn by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Township {
    pub id: String,
    pub name: String,
}

/// A village (村) of a township.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Village {
    /// Unique in the district, e.g. `yanqing-dongguan`.
    pub id: String,
    pub township_id: String,
    pub name: String,
}

/// A household with its resident.
///
/// The household is the one place of the vulnerable flag: devices carry none, and the rules,
/// dispatch and the console read it through the device's household.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Household {
    pub id: String,
    pub village_id: String,
    /// Where the technician goes, e.g. `西关村 3 组 12 号`.
    pub address: String,
    /// The resident's name (the person to ask for).
    pub resident: String,
    /// One to [`people::MAX_PHONES`] numbers in normal form (digits only, no `+86`), the
    /// first the one to ring first. `households.csv` column `phone`, separated by `;`.
    pub phones: Vec<String>,
    /// An elderly person living alone, or another reason to come first.
    pub vulnerable: bool,
    /// The household's caretaker (管护员), a `contacts.csv` id of role `caretaker`; `None`: the
    /// village's caretaker (the first by id).
    #[serde(default)]
    pub caretaker_id: Option<String>,
    /// The id (`agent_id`) of the household's edge box, whose client certificate
    /// (`gateway certs box`) lets it publish this household's devices; `None`: the box's id is
    /// the household's id.
    #[serde(default)]
    pub edge_box: Option<String>,
    /// What the site is: a home (the default), or a village public building or a seedling
    /// greenhouse with its own comfort thresholds, priorities and SLA. `households.csv` column
    /// `site_type`, optional.
    #[serde(default)]
    pub site_type: SiteType,
}

impl Household {
    /// The id of the household's edge box.
    pub fn edge_box_id(&self) -> &str {
        self.edge_box.as_deref().unwrap_or(&self.id)
    }
}

/// A winning-bid vendor (中标厂家), responsible for its devices' 5-year warranty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Vendor {
    pub id: String,
    pub name: String,
    /// The contract period (同期) the vendor won its bid in, e.g. `2016`: a vendor without
    /// staff for an order may delegate it only to a vendor of the same period
    /// (`orders::delegation`). `vendors.csv` column `period`, optional.
    #[serde(default)]
    pub period: Option<String>,
}

/// A heater.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub household_id: String,
    /// `heat_pump` or `gas_boiler`.
    pub kind: String,
    pub brand: String,
    pub model: String,
    pub vendor_id: String,
    /// Installation date, `YYYY-MM-DD`.
    pub installed_on: String,
    /// Last day of the free warranty, `YYYY-MM-DD` (5 years after installation).
    pub warranty_until: String,
}

/// Who a team works for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TeamKind {
    /// A vendor's own repair team: devices in warranty, free of charge.
    Vendor,
    /// The district's third-party company: devices out of warranty, resident pays parts.
    ThirdParty,
    /// The power company with the village electricians: supply incidents.
    PowerUtility,
    /// The gas company: gas supply incidents.
    GasUtility,
}

impl TeamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamKind::Vendor => "vendor",
            TeamKind::ThirdParty => "third_party",
            TeamKind::PowerUtility => "power_utility",
            TeamKind::GasUtility => "gas_utility",
        }
    }

    pub fn parse(value: &str) -> Option<TeamKind> {
        [
            TeamKind::Vendor,
            TeamKind::ThirdParty,
            TeamKind::PowerUtility,
            TeamKind::GasUtility,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }
}

/// A repair team and the townships it answers for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub kind: TeamKind,
    /// The vendor, for vendor teams.
    pub vendor_id: Option<String>,
    pub phone: String,
    /// Township ids of the team's responsibility zone.
    pub townships: Vec<String>,
}

/// A technician of a team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Technician {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub phone: String,
    /// Where the technician is based; dispatch prefers the same village, then township.
    pub home_village_id: Option<String>,
}

/// A village caretaker (管护员) or electrician (电工).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VillageContact {
    pub id: String,
    pub village_id: String,
    /// `caretaker` or `electrician`.
    pub role: String,
    pub name: String,
    pub phone: String,
}

/// One part of the unified price list (统一配件价格).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Part {
    pub code: String,
    pub name: String,
    /// Price in fen (0.01 CNY).
    pub price_cents: i64,
}

/// Everything an import brings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistryData {
    pub townships: Vec<Township>,
    pub villages: Vec<Village>,
    pub vendors: Vec<Vendor>,
    pub households: Vec<Household>,
    pub devices: Vec<Device>,
    pub teams: Vec<Team>,
    pub technicians: Vec<Technician>,
    pub contacts: Vec<VillageContact>,
    pub parts: Vec<Part>,
    /// The technicians' skills (`technicians.csv` column `skills`) and `travel.csv`: what
    /// dispatch knows about who can do what and how far it is. Optional.
    #[serde(default)]
    pub roads: RoadData,
}

/// Rows per table of an import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ImportSummary {
    pub townships: usize,
    pub villages: usize,
    pub vendors: usize,
    pub households: usize,
    pub devices: usize,
    pub teams: usize,
    pub technicians: usize,
    pub contacts: usize,
    pub parts: usize,
}

/// A bad row: which file, line and column, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ImportError {
    pub file: String,
    pub line: u64,
    pub column: usize,
    pub field: String,
    pub message: String,
}

/// The CSV files of a registry folder, in import order. Every file is optional.
pub const FILES: [&str; 10] = [
    "townships.csv",
    "villages.csv",
    "vendors.csv",
    "households.csv",
    "devices.csv",
    "teams.csv",
    "technicians.csv",
    "contacts.csv",
    "parts.csv",
    "travel.csv",
];

/// Reads one CSV text into rows of named fields, with positions for errors.
struct Table<'a> {
    file: &'a str,
    headers: Vec<String>,
    rows: Vec<(u64, csv::StringRecord)>,
}

impl<'a> Table<'a> {
    fn parse(file: &'a str, text: &str, required: &[&str]) -> Result<Table<'a>, ImportError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(file, &e))?
            .iter()
            .map(str::to_owned)
            .collect();
        for name in required {
            if !headers.iter().any(|h| h == name) {
                return Err(ImportError {
                    file: file.to_owned(),
                    line: 1,
                    column: 1,
                    field: (*name).to_owned(),
                    message: format!("missing column (the header has: {})", headers.join(",")),
                });
            }
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(file, &e))?;
            let line = record.position().map_or(0, |p| p.line());
            rows.push((line, record));
        }
        Ok(Table {
            file,
            headers,
            rows,
        })
    }

    fn column(&self, name: &str) -> usize {
        self.headers
            .iter()
            .position(|h| h == name)
            .unwrap_or(usize::MAX)
    }

    fn error(&self, line: u64, name: &str, message: String) -> ImportError {
        ImportError {
            file: self.file.to_owned(),
            line,
            column: self.column(name).saturating_add(1),
            field: name.to_owned(),
            message,
        }
    }

    /// A required, non-empty field.
    fn text(
        &self,
        line: u64,
        record: &csv::StringRecord,
        name: &str,
    ) -> Result<String, ImportError> {
        match record.get(self.column(name)) {
            Some(value) if !value.is_empty() => Ok(value.to_owned()),
            _ => Err(self.error(line, name, "is empty".into())),
        }
    }

    /// A required, non-empty field of at most `max` characters.
    fn bounded(
        &self,
        line: u64,
        record: &csv::StringRecord,
        name: &str,
        max: usize,
    ) -> Result<String, ImportError> {
        let value = self.text(line, record, name)?;
        if value.chars().count() > max {
            return Err(self.error(line, name, format!("is longer than {max} characters")));
        }
        Ok(value)
    }

    /// An optional field (empty or missing column = `None`).
    fn optional(&self, record: &csv::StringRecord, name: &str) -> Option<String> {
        record
            .get(self.column(name))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A lowercase identifier usable in topics and URLs.
    fn id(&self, line: u64, record: &csv::StringRecord, name: &str) -> Result<String, ImportError> {
        let value = self.text(line, record, name)?;
        wire::DeviceId::parse(&value)
            .map(|_| value)
            .map_err(|e| self.error(line, name, e.to_string()))
    }
}

fn csv_error(file: &str, error: &csv::Error) -> ImportError {
    let line = error.position().map_or(0, |p| p.line());
    ImportError {
        file: file.to_owned(),
        line,
        column: 1,
        field: "row".into(),
        message: error.to_string(),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "是" => Some(true),
        "false" | "no" | "0" | "否" | "" => Some(false),
        _ => None,
    }
}

/// Checks `YYYY-MM-DD` and returns (year, month, day).
pub fn parse_date(value: &str) -> Option<(i32, u32, u32)> {
    let mut parts = value.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    // Four-digit years only: dates are stored and compared as `YYYY-MM-DD` text, and a year
    // near i32::MAX would overflow the warranty arithmetic.
    if !(1..=9999).contains(&year) {
        return None;
    }
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some()
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
    {
        return None;
    }
    Some((year, month, day))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// The last day of a warranty of `years` from `installed_on` (the day before the anniversary).
pub fn warranty_until(installed_on: (i32, u32, u32), years: i32) -> String {
    let (year, month, day) = installed_on;
    let end_year = year.saturating_add(years);
    // Day before the anniversary; 29 Feb anniversaries fall back to 28 Feb.
    let day = day.min(days_in_month(end_year, month));
    let (y, m, d) = if day > 1 {
        (end_year, month, day - 1)
    } else if month > 1 {
        (end_year, month - 1, days_in_month(end_year, month - 1))
    } else {
        (end_year.saturating_sub(1), 12, 31)
    };
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses the CSV texts of a registry import (file name -> content) and checks every reference
/// against the batch itself and `existing` ids already in the database.
pub fn parse(
    files: &HashMap<String, String>,
    existing: &KnownIds,
) -> Result<RegistryData, ImportError> {
    let mut data = RegistryData::default();
    let mut known = existing.clone();
    // A household's caretaker is checked once contacts.csv (read after households.csv) is in:
    // where it is named (the error to give) and whom it names.
    let mut caretaker_refs: Vec<(ImportError, String)> = Vec::new();

    if let Some(text) = files.get("townships.csv") {
        parse_townships(text, &mut data, &mut known)?;
    }
    if let Some(text) = files.get("villages.csv") {
        parse_villages(text, &mut data, &mut known)?;
    }
    if let Some(text) = files.get("vendors.csv") {
        parse_vendors(text, &mut data, &mut known)?;
    }
    if let Some(text) = files.get("households.csv") {
        parse_households(text, &mut data, &mut known, &mut caretaker_refs)?;
    }
    if let Some(text) = files.get("devices.csv") {
        parse_devices(text, &mut data, &mut known)?;
    }
    if let Some(text) = files.get("teams.csv") {
        parse_teams(text, &mut data, &mut known)?;
    }
    if let Some(text) = files.get("technicians.csv") {
        parse_technicians(text, &mut data, &mut known)?;
    }
    if let Some(text) = files.get("contacts.csv") {
        parse_contacts(text, &mut data, &mut known)?;
    }
    for (mut error, caretaker) in caretaker_refs {
        if !known.caretakers.contains(&caretaker) {
            error.message = format!("unknown caretaker {caretaker:?} (no contacts.csv row of role caretaker has this id)");
            return Err(error);
        }
    }
    if let Some(text) = files.get("parts.csv") {
        parse_parts(text, &mut data)?;
    }
    check_unique(&data)?;
    data.roads = roads::parse(files, &known)?;
    Ok(data)
}

fn check_unique(data: &RegistryData) -> Result<(), ImportError> {
    fn unique<'a>(file: &str, ids: impl Iterator<Item = &'a str>) -> Result<(), ImportError> {
        let mut seen = HashSet::new();
        for (index, id) in ids.enumerate() {
            if !seen.insert(id) {
                return Err(ImportError {
                    file: file.to_owned(),
                    line: index as u64 + 2,
                    column: 1,
                    field: "id".into(),
                    message: format!("{id:?} appears twice"),
                });
            }
        }
        Ok(())
    }
    unique(
        "townships.csv",
        data.townships.iter().map(|r| r.id.as_str()),
    )?;
    unique("villages.csv", data.villages.iter().map(|r| r.id.as_str()))?;
    unique("vendors.csv", data.vendors.iter().map(|r| r.id.as_str()))?;
    unique(
        "households.csv",
        data.households.iter().map(|r| r.id.as_str()),
    )?;
    unique("devices.csv", data.devices.iter().map(|r| r.id.as_str()))?;
    unique("teams.csv", data.teams.iter().map(|r| r.id.as_str()))?;
    unique(
        "technicians.csv",
        data.technicians.iter().map(|r| r.id.as_str()),
    )?;
    unique("contacts.csv", data.contacts.iter().map(|r| r.id.as_str()))?;
    unique("parts.csv", data.parts.iter().map(|r| r.code.as_str()))
}

/// `120.5` / `120.50` / `120` yuan -> fen.
fn parse_price(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 2 || whole.is_empty() {
        return None;
    }
    let whole: i64 = whole.parse().ok().filter(|w| *w >= 0)?;
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(fraction)
}

/// Ids already in the database, so an import may refer to them.
#[derive(Debug, Clone, Default)]
pub struct KnownIds {
    pub townships: HashSet<String>,
    pub villages: HashSet<String>,
    pub vendors: HashSet<String>,
    pub households: HashSet<String>,
    pub teams: HashSet<String>,
    /// Ids of the contacts whose role is `caretaker`.
    pub caretakers: HashSet<String>,
}

/// Reads the registry CSV files present in `dir`.
pub fn read_dir(dir: &Path) -> Result<HashMap<String, String>, ImportError> {
    let mut files = HashMap::new();
    for name in FILES {
        let path = dir.join(name);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| ImportError {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                field: "file".into(),
                message: format!("cannot be read: {e}"),
            })?;
            files.insert(name.to_owned(), text);
        }
    }
    if files.is_empty() {
        return Err(ImportError {
            file: dir.display().to_string(),
            line: 0,
            column: 0,
            field: "folder".into(),
            message: format!("has none of {}", FILES.join(", ")),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("townships.csv", "id,name\nyanqing,延庆镇\n"),
        ("villages.csv", "id,township_id,name\nyanqing-dongguan,yanqing,东关村\n"),
        ("vendors.csv", "id,name\naurora,Aurora\n"),
        ("households.csv", "id,village_id,address,resident,phone,vulnerable\nh1,yanqing-dongguan,东关村1号,王秀英,13800000001,true\n"),
        ("devices.csv", "id,household_id,kind,brand,model,vendor_id,installed_on\nd1,h1,heat_pump,Aurora,KF,aurora,2022-03-01\n"),
    ];

    #[test]
    fn a_consistent_import_parses_with_warranty_ends() {
        let data = parse(&files(BASE), &KnownIds::default()).expect("valid");
        assert_eq!(data.devices[0].warranty_until, "2027-02-28");
        assert!(data.households[0].vulnerable);
    }

    #[test]
    fn a_bad_row_names_file_line_and_column() {
        let mut f = files(BASE);
        f.insert(
            "households.csv".into(),
            "id,village_id,address,resident,phone,vulnerable\nh1,yanqing-dongguan,a,b,13800000001,true\nh2,yanqing-nowhere,a,b,13800000001,false\n".into(),
        );
        let error = parse(&f, &KnownIds::default()).expect_err("unknown village");
        assert_eq!(
            error.to_string(),
            "households.csv:3:2: village_id: unknown village \"yanqing-nowhere\""
        );
        let mut f = files(BASE);
        f.insert(
            "devices.csv".into(),
            "id,household_id,kind,brand,model,vendor_id,installed_on\nd1,h1,heat_pump,A,K,aurora,2022-02-30\n".into(),
        );
        let error = parse(&f, &KnownIds::default()).expect_err("bad date");
        assert_eq!(
            (error.line, error.column, error.field.as_str()),
            (2, 7, "installed_on")
        );
    }

    #[test]
    fn edge_boxes_are_optional_valid_ids_and_one_household_each() {
        let header = "id,village_id,address,resident,phone,vulnerable,edge_box\n";
        let mut f = files(BASE);
        f.insert(
            "households.csv".into(),
            format!("{header}h1,yanqing-dongguan,a,b,13800000001,true,box-0001\nh2,yanqing-dongguan,a,b,13800000001,false,\n"),
        );
        let data = parse(&f, &KnownIds::default()).expect("valid");
        assert_eq!(data.households[0].edge_box_id(), "box-0001");
        assert_eq!(data.households[1].edge_box_id(), "h2");
        f.insert(
            "households.csv".into(),
            format!("{header}h1,yanqing-dongguan,a,b,13800000001,true,Box 1\n"),
        );
        let error = parse(&f, &KnownIds::default()).expect_err("not an id");
        assert_eq!(
            (error.line, error.column, error.field.as_str()),
            (2, 7, "edge_box")
        );
        f.insert(
            "households.csv".into(),
            format!(
                "{header}h1,yanqing-dongguan,a,b,13800000001,true,h2\nh2,yanqing-dongguan,a,b,13800000001,false,\n"
            ),
        );
        let error = parse(&f, &KnownIds::default()).expect_err("two households, one box");
        assert_eq!(
            error.to_string(),
            "households.csv:3:1: id: edge box \"h2\" is already the box of household \"h1\""
        );
    }

    #[test]
    fn site_types_are_optional_and_a_bad_one_is_named_by_line_and_column() {
        let header = "id,village_id,address,resident,phone,vulnerable,site_type\n";
        let mut f = files(BASE);
        f.insert(
            "households.csv".into(),
            format!(
                "{header}h1,yanqing-dongguan,东关村卫生室,村医,13800000001,false,clinic\n\
                 h2,yanqing-dongguan,东关村育苗大棚,b,13800000002,false,greenhouse\n\
                 h3,yanqing-dongguan,a,b,13800000003,false,\n\
                 h4,yanqing-dongguan,a,b,13800000004,false,activity_room\n\
                 h5,yanqing-dongguan,a,b,13800000005,false,school\n"
            ),
        );
        let data = parse(&f, &KnownIds::default()).expect("valid");
        let types: Vec<SiteType> = data.households.iter().map(|h| h.site_type).collect();
        assert_eq!(
            types,
            [
                SiteType::Clinic,
                SiteType::Greenhouse,
                SiteType::Home,
                SiteType::ActivityRoom,
                SiteType::School
            ]
        );
        // Files without the column import as homes.
        let data = parse(&files(BASE), &KnownIds::default()).expect("valid");
        assert_eq!(data.households[0].site_type, SiteType::Home);
        // A name that is not a site type (case matters, as for every other name).
        f.insert(
            "households.csv".into(),
            format!(
                "{header}h1,yanqing-dongguan,a,b,13800000001,false,clinic\n\
                 h2,yanqing-dongguan,a,b,13800000002,false,Greenhouse\n"
            ),
        );
        let error = parse(&f, &KnownIds::default()).expect_err("not a site type");
        assert_eq!(
            error.to_string(),
            "households.csv:3:7: site_type: \"Greenhouse\" is not one of home, activity_room, clinic, school, greenhouse"
        );
        for (text, site) in SiteType::ALL.map(|t| (t.as_str(), t)) {
            assert_eq!(SiteType::parse(text), Some(site));
            assert_eq!(site.tag(), format!("site:{text}"));
        }
        assert!(SiteType::Clinic.is_public_service() && SiteType::School.is_public_service());
        assert!(!SiteType::Greenhouse.is_public_service() && !SiteType::Home.is_public_service());
    }

    #[test]
    fn references_may_point_at_rows_already_imported() {
        let mut known = KnownIds::default();
        known.households.insert("h9".into());
        known.vendors.insert("aurora".into());
        let f = files(&[(
            "devices.csv",
            "id,household_id,kind,brand,model,vendor_id,installed_on\nd9,h9,gas_boiler,L,X,aurora,2019-11-30\n",
        )]);
        let data = parse(&f, &known).expect("valid");
        assert_eq!(data.devices[0].warranty_until, "2024-11-29");
    }

    #[test]
    fn duplicates_and_bad_prices_are_refused() {
        let f = files(&[(
            "parts.csv",
            "code,name,price_cny\nfan,风机,120.5\nfan,风机,99\n",
        )]);
        assert!(parse(&f, &KnownIds::default())
            .expect_err("dup")
            .message
            .contains("twice"));
        let f = files(&[("parts.csv", "code,name,price_cny\nfan,风机,12.345\n")]);
        assert_eq!(
            parse(&f, &KnownIds::default()).expect_err("price").field,
            "price_cny"
        );
        let f = files(&[("parts.csv", "code,name,price_cny\nfan,风机,120.5\n")]);
        assert_eq!(
            parse(&f, &KnownIds::default()).expect("ok").parts[0].price_cents,
            12_050
        );
    }

    #[test]
    fn warranty_ends_the_day_before_the_anniversary() {
        assert_eq!(warranty_until((2020, 1, 1), 5), "2024-12-31");
        assert_eq!(warranty_until((2020, 2, 29), 5), "2025-02-27");
        assert_eq!(warranty_until((2021, 6, 15), 5), "2026-06-14");
    }

    #[test]
    fn dates_hold_four_digit_years_and_extreme_ones_do_not_overflow() {
        assert_eq!(parse_date("2147483647-01-01"), None);
        assert_eq!(parse_date("0-01-01"), None);
        assert_eq!(parse_date("-5-01-01"), None);
        assert_eq!(parse_date("9999-12-31"), Some((9999, 12, 31)));
        // No wrap even when called with an unchecked year.
        assert!(!warranty_until((i32::MAX, 1, 1), 5).starts_with('-'));
    }

    #[test]
    fn households_carry_phones_and_a_caretaker_and_old_files_still_import() {
        // An old file: one phone, no caretaker column.
        let data = parse(&files(BASE), &KnownIds::default()).expect("old shape");
        assert_eq!(data.households[0].phones, ["13800000001"]);
        assert_eq!(data.households[0].caretaker_id, None);

        let mut f = files(BASE);
        f.insert(
            "households.csv".into(),
            "id,village_id,address,resident,phone,vulnerable,caretaker_id\n\
             h1,yanqing-dongguan,东关村 3 组 12 号,王秀英,\"+86 138-0013-8000; 010 6918 1234\",true,c1\n\
             h2,yanqing-dongguan,东关村 1 组 2 号,李建国,13800138001,false,\n"
                .into(),
        );
        f.insert(
            "contacts.csv".into(),
            "id,village_id,role,name,phone\nc1,yanqing-dongguan,caretaker,赵敏,13700000001\n"
                .into(),
        );
        let data = parse(&f, &KnownIds::default()).expect("valid");
        assert_eq!(data.households[0].phones, ["13800138000", "01069181234"]);
        assert_eq!(data.households[0].caretaker_id.as_deref(), Some("c1"));
        assert_eq!(data.households[1].caretaker_id, None);
        // The export reads back to the same rows.
        let exported = to_csv_files(&data)
            .into_iter()
            .map(|(name, text)| (name.to_owned(), text))
            .collect();
        assert_eq!(
            parse(&exported, &KnownIds::default()).expect("export"),
            data
        );
    }

    #[test]
    fn bad_contacts_of_a_household_are_named_by_line_and_column() {
        let header = "id,village_id,address,resident,phone,vulnerable,caretaker_id\n";
        let refused = |households: &str, contacts: Option<&str>| {
            let mut f = files(BASE);
            f.insert("households.csv".into(), format!("{header}{households}"));
            if let Some(contacts) = contacts {
                f.insert(
                    "contacts.csv".into(),
                    format!("id,village_id,role,name,phone\n{contacts}"),
                );
            }
            parse(&f, &KnownIds::default())
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            refused("h1,yanqing-dongguan,a,王,13800000001,true,\nh2,yanqing-dongguan,a,李,1380000,false,\n", None),
            "households.csv:3:5: phone: \"1380000\" is not a mobile (11 digits from 1) or landline number (0 + area code, or 7-8 digits)"
        );
        assert_eq!(
            refused(
                "h1,yanqing-dongguan,a,王,13800000001;13800000002;13800000003;13800000004,true,\n",
                None
            ),
            "households.csv:2:5: phone: has 4 phone numbers; a household keeps at most 3"
        );
        assert!(refused(
            &format!(
                "h1,yanqing-dongguan,a,{},13800000001,true,\n",
                "王".repeat(41)
            ),
            None
        )
        .starts_with("households.csv:2:4: resident: is longer than 40"));
        assert_eq!(
            refused("h1,yanqing-dongguan,a,王,13800000001,true,\nh2,yanqing-dongguan,a,李,13800000002,false,e1\n",
                Some("e1,yanqing-dongguan,electrician,孙强,13700000002\n")),
            "households.csv:3:7: caretaker_id: unknown caretaker \"e1\" (no contacts.csv row of role caretaker has this id)"
        );
        // A caretaker imported earlier is known.
        let mut known = KnownIds::default();
        known.villages.insert("yanqing-dongguan".into());
        known.caretakers.insert("c9".into());
        let f = files(&[(
            "households.csv",
            &format!("{header}h1,yanqing-dongguan,a,王,13800000001,true,c9\n"),
        )]);
        assert!(parse(&f, &known).is_ok());
    }
}
