//! A realistic Yanqing registry generated from a simulated fleet: residents, installation
//! dates (some devices out of their 5-year warranty), the winning-bid vendors with teams per
//! group of townships, the district's third-party company with a team per township, the power
//! and gas companies, village caretakers and electricians, and the unified parts price list.
//! Teams are staffed at no more than 500 households per technician, as the scheme requires.
//! Residents are synthetic: names from common surnames and given names, addresses such as
//! `西关村 3 组 12 号`, phone numbers in the unissued `100` block; all deterministic from the seed.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    parse_date, warranty_until, Device, Household, Part, RegistryData, Team, TeamKind, Technician,
    Township, Vendor, Village, VillageContact,
};

/// One household of the simulated fleet, as the registry needs it.
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

fn vendor_id(brand: &str) -> String {
    brand
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Builds the registry for `fleet`. Deterministic for a given fleet and seed.
pub fn generate(fleet: &[FleetHousehold], seed: u64) -> RegistryData {
    let mut rng = Lcg(seed ^ 0x5DEE_CE66_D1CE_4E5B);
    let mut people = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut data = RegistryData::default();
    let mut townships: BTreeMap<String, String> = BTreeMap::new();
    let mut villages: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut vendors: BTreeMap<String, String> = BTreeMap::new();
    let mut per_township: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_vendor_township: BTreeMap<(String, String), usize> = BTreeMap::new();

    for (index, h) in fleet.iter().enumerate() {
        townships.insert(h.township.clone(), h.township_name.clone());
        let village_id = format!("{}-{}", h.township, h.village);
        villages.insert(
            village_id.clone(),
            (h.township.clone(), h.village_name.clone()),
        );
        let vendor = vendor_id(&h.brand);
        vendors.insert(vendor.clone(), format!("{} 清洁取暖设备有限公司", h.brand));
        *per_township.entry(h.township.clone()).or_default() += 1;
        *per_vendor_township
            .entry((vendor.clone(), h.township.clone()))
            .or_default() += 1;

        let household_id = format!("hh-{}", h.device_id);
        let resident = format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN));
        // Addresses and numbers come from a stream of their own, so the installation dates
        // and names drawn from `rng` stay what they were before households had them.
        let group = 1 + people.next() % 8;
        let number = 1 + people.next() % 60;
        let mut phones = vec![synthetic_phone(&mut people, index)];
        if people.next() % 3 == 0 {
            // A son or daughter working in town.
            phones.push(synthetic_phone(&mut people, index + 5_000));
        }
        data.households.push(Household {
            id: household_id.clone(),
            village_id: village_id.clone(),
            address: format!("{} {group} 组 {number} 号", h.village_name),
            resident,
            phones,
            vulnerable: h.vulnerable,
            caretaker_id: None,
            edge_box: None,
            site_type: super::SiteType::Home,
        });
        // Installed between the 2016 and 2024 heating seasons: older ones are out of warranty.
        let year = 2016 + (rng.next() % 9) as i32;
        let month = 9 + (rng.next() % 3) as u32;
        let day = 1 + (rng.next() % 28) as u32;
        let installed_on = format!("{year:04}-{month:02}-{day:02}");
        let date = parse_date(&installed_on).unwrap_or((year, 10, 1));
        data.devices.push(Device {
            id: h.device_id.clone(),
            household_id,
            kind: h.kind.clone(),
            brand: h.brand.clone(),
            model: h.model.clone(),
            vendor_id: vendor,
            warranty_until: warranty_until(date, 5),
            installed_on,
        });
    }

    data.townships = townships
        .iter()
        .map(|(id, name)| Township {
            id: id.clone(),
            name: name.clone(),
        })
        .collect();
    data.villages = villages
        .iter()
        .map(|(id, (township, name))| Village {
            id: id.clone(),
            township_id: township.clone(),
            name: name.clone(),
        })
        .collect();
    data.vendors = vendors
        .iter()
        .map(|(id, name)| Vendor {
            id: id.clone(),
            name: name.clone(),
            // The demo's vendors all won the same bid round, so they may delegate to each other.
            period: Some(DEMO_PERIOD.to_owned()),
        })
        .collect();
    let all_townships: Vec<String> = townships.keys().cloned().collect();
    let first_village_of = |township: &str| {
        villages
            .iter()
            .find(|(_, (t, _))| t == township)
            .map(|(id, _)| id.clone())
    };
    let mut technician = |data: &mut RegistryData, team: &str, home: Option<String>, n: usize| {
        for i in 0..n {
            data.technicians.push(Technician {
                id: format!("{team}-tech-{:02}", i + 1),
                team_id: team.to_owned(),
                name: format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN)),
                phone: format!("10090{:06}", data.technicians.len() % 1_000_000),
                home_village_id: home.clone(),
            });
        }
    };

    // Vendor teams: one per vendor and township it has devices in.
    let vendor_townships: BTreeSet<(String, String)> =
        per_vendor_township.keys().cloned().collect();
    for (vendor, township) in &vendor_townships {
        let team_id = format!("{vendor}-{township}");
        let households = per_vendor_township
            .get(&(vendor.clone(), township.clone()))
            .copied()
            .unwrap_or(0);
        data.teams.push(Team {
            id: team_id.clone(),
            name: format!(
                "{} {} 售后服务队",
                vendors.get(vendor).map_or("", |s| s.as_str()),
                townships.get(township).map_or("", |s| s.as_str())
            ),
            kind: TeamKind::Vendor,
            vendor_id: Some(vendor.clone()),
            phone: format!("010-6910{:04}", data.teams.len()),
            townships: vec![township.clone()],
        });
        technician(
            &mut data,
            &team_id,
            first_village_of(township),
            households.div_ceil(HOUSEHOLDS_PER_TECHNICIAN).max(1),
        );
    }
    // The district's third-party company: one team per township, sized for every household.
    for township in &all_townships {
        let team_id = format!("third-party-{township}");
        let households = per_township.get(township).copied().unwrap_or(0);
        data.teams.push(Team {
            id: team_id.clone(),
            name: format!(
                "延庆区第三方运维公司 {} 维修队",
                townships.get(township).map_or("", |s| s.as_str())
            ),
            kind: TeamKind::ThirdParty,
            vendor_id: None,
            phone: format!("010-6910{:04}", data.teams.len()),
            townships: vec![township.clone()],
        });
        technician(
            &mut data,
            &team_id,
            first_village_of(township),
            households.div_ceil(HOUSEHOLDS_PER_TECHNICIAN).max(1),
        );
    }
    // The utilities answer for the whole district.
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
        technician(&mut data, id, None, 3);
    }
    for village in villages.keys() {
        for role in ["caretaker", "electrician"] {
            data.contacts.push(VillageContact {
                id: format!("{village}-{role}"),
                village_id: village.clone(),
                role: role.to_owned(),
                name: format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN)),
                phone: format!("10080{:06}", data.contacts.len() % 1_000_000),
            });
        }
    }
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
}
