//! A realistic Yanqing registry generated from a simulated fleet: residents, installation
//! dates (some devices out of their 5-year warranty), the winning-bid vendors with a team per
//! township they serve, the district's third-party company with a team per township, the power
//! and gas companies, village caretakers and electricians, and the unified parts price list.
//! Teams are staffed at no more than 500 households per technician, as the scheme requires.
//! Residents are synthetic: names from common surnames and given names, addresses such as
//! `西关村 3 组 12 号`, phone numbers in the unissued `100` block; all deterministic from the seed.
//!
//! [`generate`] is the demo's registry; [`generate_with`] shapes the same registry with
//! [`GenerateOptions`] (technicians per so many households, edge boxes serving several devices
//! of one household, given installation dates) for the simulator's benches.
use std::collections::{BTreeMap, HashMap};

use super::{
    parse_date, warranty_until, Device, Household, Part, RegistryData, Skill, Team, TeamKind,
    Technician, Township, TravelTime, Vendor, Village, VillageContact,
};

/// One device of the simulated fleet and the household it heats, as the registry needs it: a
/// household of its own unless [`GenerateOptions::edge_boxes`] puts it in another's.
#[derive(Debug, Clone)]
pub struct FleetHousehold {
    pub device_id: String,
    pub township: String,
    pub township_name: String,
    pub village: String,
    pub village_name: String,
    pub kind: String,
    pub brand: String,
    pub model: String,
    pub vulnerable: bool,
}

pub use crate::orders::scheme::HOUSEHOLDS_PER_TECHNICIAN;
/// The contract period (同期) of every demo vendor.
pub const DEMO_PERIOD: &str = "2016";

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "胡", "郭", "何",
    "高", "林", "罗", "郑",
];
const GIVEN: &[&str] = &[
    "秀英", "桂英", "玉兰", "建国", "国强", "淑珍", "凤兰", "志强", "永福", "德胜", "春花", "海燕",
    "文明", "卫东", "桂芝", "宝山", "金凤", "长青", "立新", "红梅",
];

/// The unified parts price list (prices in fen), typical of heat-pump and boiler repairs.
pub const PARTS: &[(&str, &str, i64)] = &[
    ("flow-switch", "水流开关 water flow switch", 8_500),
    ("ntc-sensor", "NTC温度传感器 NTC temperature sensor", 4_500),
    ("y-filter", "Y型过滤器 Y-filter", 6_000),
    ("circulation-pump", "循环水泵 circulation pump", 68_000),
    ("expansion-vessel", "膨胀水箱 expansion vessel", 32_000),
    (
        "pressure-relief-valve",
        "安全阀 pressure relief valve",
        9_500,
    ),
    ("fan-motor", "风机电机 fan motor", 45_000),
    ("ignition-electrode", "点火电极 ignition electrode", 7_000),
    ("gas-valve", "燃气比例阀 gas proportional valve", 52_000),
    (
        "air-pressure-switch",
        "风压开关 air-pressure switch",
        11_000,
    ),
    ("four-way-valve", "四通阀 four-way reversing valve", 38_000),
    (
        "expansion-valve",
        "电子膨胀阀 electronic expansion valve",
        42_000,
    ),
    (
        "refrigerant-r32-kg",
        "R32冷媒(每公斤) R32 refrigerant per kg",
        15_000,
    ),
    ("control-board", "主控板 main control board", 96_000),
    ("contactor", "交流接触器 contactor", 12_000),
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }
}

/// A synthetic mobile-shaped number in the `100` block, which no operator issues, so no real
/// person is ever rung: `100` + four digits drawn from the seed + the household's index.
fn synthetic_phone(people: &mut Lcg, index: usize) -> String {
    format!(
        "100{:04}{:04}",
        1_000 + people.next() % 9_000,
        index % 10_000
    )
}

/// The vendor id of a brand: lower case, every other character than a letter or digit a `-`,
/// no `-` at either end (`vendor` when nothing is left).
fn vendor_id(brand: &str) -> String {
    let id: String = brand
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    match id.trim_matches('-') {
        "" => "vendor".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

/// An edge box that serves several devices of one household (a box per heater is the default:
/// the household's id is then its box's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeBox {
    /// The box's id (its `agent_id`), written to `households.csv`'s `edge_box` column.
    pub id: String,
    /// The device ids the box serves; the first one in the fleet names the household.
    pub devices: Vec<String>,
}

/// What [`generate_with`] may shape beyond the fleet itself; [`Default`] is what [`generate`]
/// builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// One technician per this many devices of a vendor's or the third-party company's team
    /// (at least one per team); the default is the scheme's [`HOUSEHOLDS_PER_TECHNICIAN`].
    pub households_per_technician: usize,
    /// Edge boxes serving several devices: all devices of a box are registered to one household,
    /// `hh-{first device}` in that device's village (its resident, address and vulnerability),
    /// with the box's id in the `edge_box` column. A device listed by an earlier box, or by no
    /// box, stays where it was; a device no box serves has a household of its own.
    pub edge_boxes: Vec<EdgeBox>,
    /// Installation dates (`YYYY-MM-DD`) by device id; a device not listed here, or listed
    /// with something that is not a date, gets one drawn from the seed.
    pub installed_on: HashMap<String, String>,
}

impl Default for GenerateOptions {
    fn default() -> GenerateOptions {
        GenerateOptions {
            households_per_technician: HOUSEHOLDS_PER_TECHNICIAN,
            edge_boxes: Vec::new(),
            installed_on: HashMap::new(),
        }
    }
}

/// The registry's village id of a household: `{township}-{village}`.
fn village_id(h: &FleetHousehold) -> String {
    format!("{}-{}", h.township, h.village)
}

/// The places, vendors and device counts of a fleet, each in id order.
#[derive(Default)]
struct Areas {
    /// Township id -> name.
    townships: BTreeMap<String, String>,
    /// Village id -> (township id, name).
    villages: BTreeMap<String, (String, String)>,
    /// Vendor id -> company name.
    vendors: BTreeMap<String, String>,
    /// Devices per township.
    per_township: BTreeMap<String, usize>,
    /// Devices per (vendor, township).
    per_vendor_township: BTreeMap<(String, String), usize>,
}

impl Areas {
    fn of(fleet: &[FleetHousehold]) -> Areas {
        let mut areas = Areas::default();
        for h in fleet {
            areas
                .townships
                .insert(h.township.clone(), h.township_name.clone());
            areas
                .villages
                .insert(village_id(h), (h.township.clone(), h.village_name.clone()));
            let vendor = vendor_id(&h.brand);
            areas
                .vendors
                .insert(vendor.clone(), format!("{} 清洁取暖设备有限公司", h.brand));
            *areas.per_township.entry(h.township.clone()).or_default() += 1;
            *areas
                .per_vendor_township
                .entry((vendor, h.township.clone()))
                .or_default() += 1;
        }
        areas
    }

    /// The township, village and vendor rows.
    fn write(&self, data: &mut RegistryData) {
        data.townships = self
            .townships
            .iter()
            .map(|(id, name)| Township {
                id: id.clone(),
                name: name.clone(),
            })
            .collect();
        data.villages = self
            .villages
            .iter()
            .map(|(id, (township, name))| Village {
                id: id.clone(),
                township_id: township.clone(),
                name: name.clone(),
            })
            .collect();
        data.vendors = self
            .vendors
            .iter()
            .map(|(id, name)| Vendor {
                id: id.clone(),
                name: name.clone(),
                // The demo's vendors all won the same bid round, so they may delegate to each
                // other.
                period: Some(DEMO_PERIOD.to_owned()),
            })
            .collect();
    }

    /// The first village (by id) of `township`: where its teams' technicians live.
    fn first_village_of(&self, township: &str) -> Option<String> {
        self.villages
            .iter()
            .find(|(_, (t, _))| t == township)
            .map(|(id, _)| id.clone())
    }

    fn township_name(&self, township: &str) -> &str {
        self.townships.get(township).map_or("", |s| s.as_str())
    }
}

/// The household of each device of `fleet` (by position): the position of the device that
/// names the household, and the edge box serving it when [`GenerateOptions::edge_boxes`] lists
/// one.
fn households_of<'a>(
    fleet: &[FleetHousehold],
    boxes: &'a [EdgeBox],
) -> Vec<(usize, Option<&'a str>)> {
    let mut households: Vec<(usize, Option<&str>)> = (0..fleet.len()).map(|p| (p, None)).collect();
    if boxes.is_empty() {
        return households;
    }
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (p, h) in fleet.iter().enumerate() {
        position.entry(h.device_id.as_str()).or_insert(p);
    }
    let mut boxed = vec![false; fleet.len()];
    for edge_box in boxes {
        let members: Vec<usize> = edge_box
            .devices
            .iter()
            .filter_map(|d| position.get(d.as_str()).copied())
            .filter(|&p| !boxed[p])
            .collect();
        let Some(&first) = members.iter().min() else {
            continue;
        };
        for p in members {
            boxed[p] = true;
            households[p] = (first, Some(edge_box.id.as_str()));
        }
    }
    households
}

/// The random streams of a registry: `rng` for names and installation dates, `people` for
/// addresses and phone numbers (a stream of its own, so the installation dates and names stay
/// what they were before households had addresses).
struct Streams {
    rng: Lcg,
    people: Lcg,
}

impl Streams {
    fn new(seed: u64) -> Streams {
        Streams {
            rng: Lcg(seed ^ 0x5DEE_CE66_D1CE_4E5B),
            people: Lcg(seed ^ 0x9E37_79B9_7F4A_7C15),
        }
    }

    fn name(&mut self) -> String {
        format!("{}{}", self.rng.pick(SURNAMES), self.rng.pick(GIVEN))
    }

    /// The household named by fleet entry `index`, `h`.
    fn household(&mut self, index: usize, h: &FleetHousehold, edge_box: Option<&str>) -> Household {
        let resident = self.name();
        let group = 1 + self.people.next() % 8;
        let number = 1 + self.people.next() % 60;
        let mut phones = vec![synthetic_phone(&mut self.people, index)];
        if self.people.next() % 3 == 0 {
            // A son or daughter working in town.
            phones.push(synthetic_phone(&mut self.people, index + 5_000));
        }
        Household {
            id: format!("hh-{}", h.device_id),
            village_id: village_id(h),
            address: format!("{} {group} 组 {number} 号", h.village_name),
            resident,
            phones,
            vulnerable: h.vulnerable,
            caretaker_id: None,
            edge_box: edge_box.map(str::to_owned),
            site_type: super::SiteType::Home,
        }
    }

    /// A device's installation date and the end of its warranty: `given` when it is a date,
    /// else drawn between the 2016 and 2024 heating seasons (older ones are out of warranty).
    /// The draw is made either way, so the names drawn after it do not depend on `given`.
    fn installation(&mut self, given: Option<&String>) -> (String, String) {
        let year = 2016 + (self.rng.next() % 9) as i32;
        let month = 9 + (self.rng.next() % 3) as u32;
        let day = 1 + (self.rng.next() % 28) as u32;
        if let Some((given, date)) = given.and_then(|g| Some((g, parse_date(g)?))) {
            return (given.clone(), warranty_until(date, 5));
        }
        let drawn = format!("{year:04}-{month:02}-{day:02}");
        let date = parse_date(&drawn).unwrap_or((year, 10, 1));
        let until = warranty_until(date, 5);
        (drawn, until)
    }

    /// `n` technicians of `team`, living in `home`.
    fn technicians(&mut self, data: &mut RegistryData, team: &str, home: Option<String>, n: usize) {
        for i in 0..n {
            let name = self.name();
            data.technicians.push(Technician {
                id: format!("{team}-tech-{:02}", i + 1),
                team_id: team.to_owned(),
                name,
                phone: format!("10090{:06}", data.technicians.len() % 1_000_000),
                home_village_id: home.clone(),
            });
        }
    }
}

/// Builds the registry for `fleet`. Deterministic for a given fleet and seed.
pub fn generate(fleet: &[FleetHousehold], seed: u64) -> RegistryData {
    generate_with(fleet, &GenerateOptions::default(), seed)
}

/// Builds the registry for `fleet` shaped by `options`. Deterministic for a given fleet,
/// options and seed; with the default options it is [`generate`]'s registry.
pub fn generate_with(
    fleet: &[FleetHousehold],
    options: &GenerateOptions,
    seed: u64,
) -> RegistryData {
    let mut streams = Streams::new(seed);
    let mut data = RegistryData::default();
    let areas = Areas::of(fleet);
    let households = households_of(fleet, &options.edge_boxes);
    for (index, h) in fleet.iter().enumerate() {
        let (owner, edge_box) = households[index];
        if owner == index {
            data.households.push(streams.household(index, h, edge_box));
        }
        let (installed_on, warranty) = streams.installation(options.installed_on.get(&h.device_id));
        data.devices.push(Device {
            id: h.device_id.clone(),
            household_id: format!("hh-{}", fleet[owner].device_id),
            kind: h.kind.clone(),
            brand: h.brand.clone(),
            model: h.model.clone(),
            vendor_id: vendor_id(&h.brand),
            warranty_until: warranty,
            installed_on,
        });
    }
    areas.write(&mut data);
    let per_technician = options.households_per_technician.max(1);
    add_vendor_teams(&mut data, &areas, per_technician, &mut streams);
    add_third_party_teams(&mut data, &areas, per_technician, &mut streams);
    add_utility_teams(&mut data, &areas, &mut streams);
    add_contacts(&mut data, &areas, &mut streams);
    add_roads(&mut data, &areas, seed);
    data.parts = PARTS
        .iter()
        .map(|(code, name, price)| Part {
            code: (*code).to_owned(),
            name: (*name).to_owned(),
            price_cents: *price,
        })
        .collect();
    data
}

/// Vendor teams: one per vendor and township it has devices in, one technician per
/// `per_technician` of those devices.
fn add_vendor_teams(
    data: &mut RegistryData,
    areas: &Areas,
    per_technician: usize,
    streams: &mut Streams,
) {
    for ((vendor, township), devices) in &areas.per_vendor_township {
        let team_id = format!("{vendor}-{township}");
        data.teams.push(Team {
            id: team_id.clone(),
            name: format!(
                "{} {} 售后服务队",
                areas.vendors.get(vendor).map_or("", |s| s.as_str()),
                areas.township_name(township)
            ),
            kind: TeamKind::Vendor,
            vendor_id: Some(vendor.clone()),
            phone: format!("010-6910{:04}", data.teams.len()),
            townships: vec![township.clone()],
        });
        let home = areas.first_village_of(township);
        streams.technicians(
            data,
            &team_id,
            home,
            devices.div_ceil(per_technician).max(1),
        );
    }
}

/// The district's third-party company: one team per township, sized for every device there.
fn add_third_party_teams(
    data: &mut RegistryData,
    areas: &Areas,
    per_technician: usize,
    streams: &mut Streams,
) {
    for township in areas.townships.keys() {
        let team_id = format!("third-party-{township}");
        let devices = areas.per_township.get(township).copied().unwrap_or(0);
        data.teams.push(Team {
            id: team_id.clone(),
            name: format!(
                "延庆区第三方运维公司 {} 维修队",
                areas.township_name(township)
            ),
            kind: TeamKind::ThirdParty,
            vendor_id: None,
            phone: format!("010-6910{:04}", data.teams.len()),
            townships: vec![township.clone()],
        });
        let home = areas.first_village_of(township);
        streams.technicians(
            data,
            &team_id,
            home,
            devices.div_ceil(per_technician).max(1),
        );
    }
}

/// The utilities answer for the whole district, three technicians each.
fn add_utility_teams(data: &mut RegistryData, areas: &Areas, streams: &mut Streams) {
    let all_townships: Vec<String> = areas.townships.keys().cloned().collect();
    for (id, name, kind) in [
        (
            "power-utility",
            "国网北京延庆供电公司 抢修队",
            TeamKind::PowerUtility,
        ),
        (
            "gas-utility",
            "北京燃气延庆分公司 抢修队",
            TeamKind::GasUtility,
        ),
    ] {
        data.teams.push(Team {
            id: id.to_owned(),
            name: name.to_owned(),
            kind,
            vendor_id: None,
            phone: "95598".to_owned(),
            townships: all_townships.clone(),
        });
        streams.technicians(data, id, None, 3);
    }
}

/// What dispatch knows about the roads, drawn from a stream of its own so every other file
/// stays as it was: a travel time from its township's service point to every village (10 to 90
/// minutes, about one village in four on a mountain road), and the technicians' skills (a
/// vendor team's, the kinds of its vendor's devices; the third party's, all; every fourth
/// technician of a team that works on boilers without the gas certification; the utilities'
/// not recorded).
fn add_roads(data: &mut RegistryData, areas: &Areas, seed: u64) {
    let mut roads = Lcg(seed ^ 0x7A5E_1F0B_2105_0021);
    data.roads.travel = areas
        .villages
        .iter()
        .map(|(village, (township, _))| TravelTime {
            township_id: township.clone(),
            village_id: village.clone(),
            minutes: 10 + (roads.next() % 81) as i64,
            mountain: roads.next() % 4 == 0,
        })
        .collect();
    let mut kinds: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for device in &data.devices {
        let entry = kinds.entry(device.vendor_id.as_str()).or_default();
        entry.0 |= device.kind == "heat_pump";
        entry.1 |= device.kind == "gas_boiler";
    }
    let teams: BTreeMap<&str, &Team> = data.teams.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut in_team: BTreeMap<&str, usize> = BTreeMap::new();
    for technician in &data.technicians {
        let Some(team) = teams.get(technician.team_id.as_str()) else {
            continue;
        };
        let (heat_pumps, boilers) = match (team.kind, &team.vendor_id) {
            (TeamKind::Vendor, Some(vendor)) => {
                kinds.get(vendor.as_str()).copied().unwrap_or_default()
            }
            (TeamKind::ThirdParty, _) => (true, true),
            _ => continue,
        };
        let index = in_team.entry(team.id.as_str()).or_default();
        *index += 1;
        let mut skills = Vec::new();
        if heat_pumps {
            skills.push(Skill::HeatPump);
        }
        if boilers {
            skills.push(Skill::Boiler);
            if *index % 4 != 0 {
                skills.push(Skill::Gas);
            }
        }
        if !skills.is_empty() {
            data.roads.skills.insert(technician.id.clone(), skills);
        }
    }
}

/// A caretaker and an electrician in every village.
fn add_contacts(data: &mut RegistryData, areas: &Areas, streams: &mut Streams) {
    for village in areas.villages.keys() {
        for role in ["caretaker", "electrician"] {
            let name = streams.name();
            data.contacts.push(VillageContact {
                id: format!("{village}-{role}"),
                village_id: village.clone(),
                role: role.to_owned(),
                name,
                phone: format!("10080{:06}", data.contacts.len() % 1_000_000),
            });
        }
    }
}

/// The registry as CSV files: see [`super::export::to_csv_files`].
pub use super::export::to_csv_files;

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<FleetHousehold> {
        (0..n)
            .map(|i| FleetHousehold {
                device_id: format!("yanqing-dongguan-{i:04}"),
                township: if i % 2 == 0 {
                    "yanqing".into()
                } else {
                    "sihai".into()
                },
                township_name: "延庆镇".into(),
                village: "dongguan".into(),
                village_name: "东关村".into(),
                kind: "heat_pump".into(),
                brand: if i % 3 == 0 {
                    "Aurora".into()
                } else {
                    "Beifeng".into()
                },
                model: "X".into(),
                vulnerable: i % 5 == 0,
            })
            .collect()
    }

    #[test]
    fn teams_are_staffed_at_most_500_households_per_technician() {
        let data = generate(&fleet(2_345), 1);
        for team in data.teams.iter().filter(|t| t.kind == TeamKind::ThirdParty) {
            let technicians = data
                .technicians
                .iter()
                .filter(|t| t.team_id == team.id)
                .count();
            let households = data
                .households
                .iter()
                .filter(|h| {
                    team.townships
                        .iter()
                        .any(|t| h.village_id.starts_with(&format!("{t}-")))
                })
                .count();
            assert!(
                households <= technicians * HOUSEHOLDS_PER_TECHNICIAN,
                "{}: {households} households, {technicians} technicians",
                team.id
            );
        }
    }

    #[test]
    fn the_generated_csv_files_import_cleanly() {
        let data = generate(&fleet(50), 7);
        let files = to_csv_files(&data)
            .into_iter()
            .map(|(name, text)| (name.to_owned(), text))
            .collect();
        let parsed =
            super::super::parse(&files, &super::super::KnownIds::default()).expect("valid");
        assert_eq!(parsed, data);
    }

    #[test]
    fn options_group_devices_under_boxes_staff_teams_and_date_devices() {
        let fleet = fleet(40);
        let device = |i: usize| fleet[i].device_id.clone();
        let options = GenerateOptions {
            households_per_technician: 5,
            edge_boxes: vec![
                EdgeBox {
                    id: "box-a".into(),
                    devices: vec![device(4), device(0), device(2), "not-in-the-fleet".into()],
                },
                // Device 0 is box-a's already.
                EdgeBox {
                    id: "box-b".into(),
                    devices: vec![device(0), device(1)],
                },
            ],
            installed_on: [
                (device(3), "2023-10-05".to_owned()),
                (device(5), "autumn".to_owned()),
            ]
            .into_iter()
            .collect(),
        };
        let data = generate_with(&fleet, &options, 3);
        let plain = generate(&fleet, 3);
        let household_of = |i: usize| -> &str {
            &data
                .devices
                .iter()
                .find(|d| d.id == fleet[i].device_id)
                .expect("device")
                .household_id
        };
        let household = |id: &str| {
            data.households
                .iter()
                .find(|h| h.id == id)
                .expect("household")
        };
        assert_eq!(data.households.len(), 38, "three devices, one household");
        for i in [0, 2, 4] {
            assert_eq!(household_of(i), format!("hh-{}", device(0)));
        }
        assert_eq!(
            household(household_of(0)).edge_box.as_deref(),
            Some("box-a")
        );
        assert_eq!(
            household(household_of(1)).edge_box.as_deref(),
            Some("box-b")
        );
        assert_eq!(household(household_of(3)).edge_box, None);
        // Given dates are kept (with their warranty); the others are drawn (the same as
        // without options up to the first device that joined another's household).
        let installed = |data: &RegistryData, i: usize| {
            let d = &data.devices[i];
            (d.installed_on.clone(), d.warranty_until.clone())
        };
        assert_eq!(
            installed(&data, 3),
            ("2023-10-05".to_owned(), "2028-10-04".to_owned())
        );
        for i in [0, 1] {
            assert_eq!(installed(&data, i), installed(&plain, i), "device {i}");
        }
        assert!(parse_date(&installed(&data, 5).0).is_some());
        // One technician per 5 devices of each team's area.
        for team in data.teams.iter().filter(|t| t.kind == TeamKind::ThirdParty) {
            let devices = fleet
                .iter()
                .filter(|h| team.townships.contains(&h.township))
                .count();
            let technicians = data
                .technicians
                .iter()
                .filter(|t| t.team_id == team.id)
                .count();
            assert_eq!(technicians, devices.div_ceil(5), "{}", team.id);
        }
        let files = to_csv_files(&data)
            .into_iter()
            .map(|(name, text)| (name.to_owned(), text))
            .collect();
        let parsed =
            super::super::parse(&files, &super::super::KnownIds::default()).expect("valid");
        assert_eq!(parsed, data);
    }

    #[test]
    fn given_dates_leave_every_other_row_as_it_was() {
        let fleet = fleet(30);
        let options = GenerateOptions {
            installed_on: fleet
                .iter()
                .map(|h| (h.device_id.clone(), "2020-01-15".to_owned()))
                .collect(),
            ..GenerateOptions::default()
        };
        let mut dated = generate_with(&fleet, &options, 9);
        assert!(dated.devices.iter().all(|d| d.installed_on == "2020-01-15"));
        let plain = generate(&fleet, 9);
        for (d, p) in dated.devices.iter_mut().zip(&plain.devices) {
            d.installed_on.clone_from(&p.installed_on);
            d.warranty_until.clone_from(&p.warranty_until);
        }
        assert_eq!(dated, plain);
    }

    #[test]
    fn vendor_ids_are_trimmed_ids() {
        assert_eq!(vendor_id("Aurora"), "aurora");
        assert_eq!(vendor_id("Midea Group"), "midea-group");
        assert_eq!(vendor_id(" (Haier) "), "haier");
        assert_eq!(vendor_id("美的"), "vendor");
    }
}
