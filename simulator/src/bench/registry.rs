//! The registry of the simulated fleet as the gateway imports it (`[registry] import`): CSV
//! files of townships, villages, vendors, households, devices, repair teams, technicians and
//! village contacts. The gateway needs it to resolve a complaint's device to its household and
//! village, and to group devices by village for supply incidents.
//!
//! Teams follow the technician model of the bench: a third-party team per township with one
//! technician per `households_per_technician` households (at least one), a team per vendor
//! covering the district, and the power and gas companies.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::fleet::HouseholdSpec;
use crate::load::BoxGroup;
use crate::rng::Rng;

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "胡", "郭", "何",
];
const GIVEN: &[&str] = &[
    "秀英", "桂英", "玉兰", "建国", "国强", "淑珍", "凤兰", "志强", "永福", "德胜", "春花", "海燕",
];

/// A CSV field, quoted when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn row(out: &mut String, fields: &[&str]) {
    let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
    let _ = writeln!(out, "{}", line.join(","));
}

/// The vendor id of a brand.
fn vendor_id(brand: &str) -> String {
    let id: String = brand
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if id.trim_matches('-').is_empty() {
        "vendor".to_owned()
    } else {
        id.trim_matches('-').to_owned()
    }
}

/// The registry files `(file name, CSV text)` for a fleet: one household per device, whose
/// edge box id is the household's id (the gateway's default).
pub fn csv_files(
    fleet: &[HouseholdSpec],
    households_per_technician: usize,
    seed: u64,
) -> Vec<(&'static str, String)> {
    files(fleet, None, households_per_technician, seed)
}

/// The registry files for a fleet whose devices are served by edge boxes (`boxes`, positions
/// in `fleet`): one household per box, `hh-{first device}` in the first device's village, with
/// the box's id in `households.csv`'s `edge_box` column and every device of the box registered
/// to that household, so the gateway finds each device under its box. A device no box serves
/// gets a household of its own (box id: the household's id).
pub fn csv_files_with_boxes(
    fleet: &[HouseholdSpec],
    boxes: &[BoxGroup],
    households_per_technician: usize,
    seed: u64,
) -> Vec<(&'static str, String)> {
    files(fleet, Some(boxes), households_per_technician, seed)
}

fn files(
    fleet: &[HouseholdSpec],
    boxes: Option<&[BoxGroup]>,
    households_per_technician: usize,
    seed: u64,
) -> Vec<(&'static str, String)> {
    // The box (if any) of each device.
    let mut box_of: Vec<Option<usize>> = vec![None; fleet.len()];
    for (index, group) in boxes.unwrap_or_default().iter().enumerate() {
        for &position in &group.households {
            if let Some(slot) = box_of.get_mut(position) {
                slot.get_or_insert(index);
            }
        }
    }
    // Each device's household: the box's first device's household, or its own.
    let household_of = |position: usize| -> usize {
        box_of[position]
            .and_then(|b| boxes?.get(b)?.households.first().copied())
            .filter(|&first| first < fleet.len())
            .unwrap_or(position)
    };
    let mut rng = Rng::derive(seed, 0x2E6_1572);
    let mut name = || {
        format!(
            "{}{}",
            SURNAMES[rng.index(SURNAMES.len())],
            GIVEN[rng.index(GIVEN.len())]
        )
    };
    let mut townships: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    let mut villages: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    let mut vendors: BTreeMap<String, String> = BTreeMap::new();
    for h in fleet {
        townships
            .entry(h.township.id)
            .or_insert((h.township.name, 0))
            .1 += 1;
        villages
            .entry(format!("{}-{}", h.township.id, h.village.id))
            .or_insert((h.township.id, h.village.name));
        vendors
            .entry(vendor_id(&h.profile.brand))
            .or_insert_with(|| format!("{} 清洁取暖设备有限公司", h.profile.brand));
    }

    let mut out_townships = String::from("id,name\n");
    for (id, (township_name, _)) in &townships {
        row(&mut out_townships, &[id, township_name]);
    }
    let mut out_villages = String::from("id,township_id,name\n");
    for (id, (township, village_name)) in &villages {
        row(&mut out_villages, &[id, township, village_name]);
    }
    let mut out_vendors = String::from("id,name\n");
    for (id, vendor_name) in &vendors {
        row(&mut out_vendors, &[id, vendor_name]);
    }
    let mut out_households = String::from(if boxes.is_some() {
        "id,village_id,address,resident,phone,vulnerable,edge_box\n"
    } else {
        "id,village_id,address,resident,phone,vulnerable\n"
    });
    let mut out_devices = String::from("id,household_id,kind,brand,model,vendor_id,installed_on\n");
    for (position, h) in fleet.iter().enumerate() {
        let first = household_of(position);
        let household = format!("hh-{}", fleet[first].device_id);
        if first == position {
            let village = format!("{}-{}", h.township.id, h.village.id);
            let address = format!(
                "{}{}{}号",
                h.township.name,
                h.village.name,
                h.index % 400 + 1
            );
            let phone = format!("138{:08}", h.index % 100_000_000);
            let resident = name();
            let mut fields = vec![
                household.as_str(),
                &village,
                &address,
                &resident,
                &phone,
                if h.vulnerable { "true" } else { "false" },
            ];
            if let Some(boxes) = boxes {
                fields.push(
                    box_of[position]
                        .and_then(|b| boxes.get(b))
                        .map_or("", |g| g.identity.box_id.as_str()),
                );
            }
            row(&mut out_households, &fields);
        }
        // Installed 2018-2024: the older ones are out of their 5-year warranty.
        let seed = h.model_seed;
        let installed = format!(
            "{:04}-{:02}-{:02}",
            2018 + seed % 7,
            1 + (seed >> 8) % 12,
            1 + (seed >> 16) % 28
        );
        row(
            &mut out_devices,
            &[
                h.device_id.as_str(),
                &household,
                h.kind.as_str(),
                &h.profile.brand,
                &h.profile.model,
                &vendor_id(&h.profile.brand),
                &installed,
            ],
        );
    }

    let all_townships: Vec<&str> = townships.keys().copied().collect();
    let mut out_teams = String::from("id,name,kind,phone,townships,vendor_id\n");
    let mut out_technicians = String::from("id,team_id,name,phone\n");
    let mut phone = 0u32;
    let mut next_phone = || {
        phone += 1;
        format!("010-6910{phone:04}")
    };
    for (township, (township_name, households)) in &townships {
        let team = format!("third-party-{township}");
        row(
            &mut out_teams,
            &[
                &team,
                &format!("{township_name}第三方维修队"),
                "third_party",
                &next_phone(),
                township,
                "",
            ],
        );
        let technicians = households.div_ceil(households_per_technician.max(1)).max(1);
        for i in 0..technicians {
            row(
                &mut out_technicians,
                &[
                    &format!("{team}-tech-{:02}", i + 1),
                    &team,
                    &name(),
                    &next_phone(),
                ],
            );
        }
    }
    for (vendor, vendor_name) in &vendors {
        let team = format!("{vendor}-service");
        row(
            &mut out_teams,
            &[
                &team,
                &format!("{vendor_name}售后服务队"),
                "vendor",
                &next_phone(),
                &all_townships.join(";"),
                vendor,
            ],
        );
        let technicians = fleet
            .iter()
            .filter(|h| vendor_id(&h.profile.brand) == *vendor)
            .count()
            .div_ceil(households_per_technician.max(1))
            .max(1);
        for i in 0..technicians {
            row(
                &mut out_technicians,
                &[
                    &format!("{team}-tech-{:02}", i + 1),
                    &team,
                    &name(),
                    &next_phone(),
                ],
            );
        }
    }
    for (team, team_name, kind) in [
        ("power-utility", "国网延庆供电公司", "power_utility"),
        ("gas-utility", "延庆燃气公司", "gas_utility"),
    ] {
        row(
            &mut out_teams,
            &[
                team,
                team_name,
                kind,
                &next_phone(),
                &all_townships.join(";"),
                "",
            ],
        );
        row(
            &mut out_technicians,
            &[&format!("{team}-duty"), team, &name(), &next_phone()],
        );
    }
    let mut out_contacts = String::from("id,village_id,role,name,phone\n");
    for village in villages.keys() {
        for role in ["caretaker", "electrician"] {
            row(
                &mut out_contacts,
                &[
                    &format!("{village}-{role}"),
                    village,
                    role,
                    &name(),
                    &next_phone(),
                ],
            );
        }
    }
    vec![
        ("townships.csv", out_townships),
        ("villages.csv", out_villages),
        ("vendors.csv", out_vendors),
        ("households.csv", out_households),
        ("devices.csv", out_devices),
        ("teams.csv", out_teams),
        ("technicians.csv", out_technicians),
        ("contacts.csv", out_contacts),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn every_device_has_a_household_in_a_known_village_and_columns_line_up() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let profiles: Vec<_> = std::fs::read_dir(&dir)
            .expect("profiles")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| Arc::new(edge_agent::profile::Profile::load(&p).expect("profile")))
            .collect();
        let fleet = crate::fleet::generate(60, 3, &profiles).expect("fleet");
        let files: BTreeMap<&str, String> = csv_files(&fleet, 500, 3).into_iter().collect();
        let ids = |file: &str| -> Vec<String> {
            files[file]
                .lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap_or_default().to_owned())
                .collect()
        };
        for (file, text) in &files {
            let mut lines = text.lines();
            let columns = lines.next().expect("header").split(',').count();
            for line in lines {
                assert_eq!(line.split(',').count(), columns, "{file}: {line}");
            }
        }
        let villages = ids("villages.csv");
        let households = ids("households.csv");
        for line in files["households.csv"].lines().skip(1) {
            let village = line.split(',').nth(1).expect("village column");
            assert!(villages.iter().any(|v| v == village), "{line}");
        }
        for line in files["devices.csv"].lines().skip(1) {
            let household = line.split(',').nth(1).expect("household column");
            assert!(households.iter().any(|h| h == household), "{line}");
        }
        assert_eq!(ids("devices.csv").len(), 60);
        assert!(files["teams.csv"].contains("power_utility"));
    }

    #[test]
    fn devices_of_a_box_are_registered_to_the_household_of_that_box() {
        let profiles = crate::bench::shipped_profiles().expect("profiles");
        let fleet = crate::fleet::generate(200, 3, &profiles).expect("fleet");
        let groups = crate::load::group_households(&fleet, 4);
        let files: BTreeMap<&str, String> = csv_files_with_boxes(&fleet, &groups, 500, 3)
            .into_iter()
            .collect();
        let rows = |file: &str| -> Vec<Vec<String>> {
            files[file]
                .lines()
                .skip(1)
                .map(|l| l.split(',').map(str::to_owned).collect())
                .collect()
        };
        assert!(files["households.csv"]
            .starts_with("id,village_id,address,resident,phone,vulnerable,edge_box\n"));
        // household -> (edge box, village)
        let households: BTreeMap<String, (String, String)> = rows("households.csv")
            .into_iter()
            .map(|r| (r[0].clone(), (r[6].clone(), r[1].clone())))
            .collect();
        assert_eq!(households.len(), groups.len(), "one household per box");
        let edge_boxes: std::collections::BTreeSet<&String> =
            households.values().map(|(b, _)| b).collect();
        assert_eq!(edge_boxes.len(), groups.len(), "one box per household");
        let device_household: BTreeMap<String, String> = rows("devices.csv")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        assert_eq!(device_household.len(), 200);
        for group in &groups {
            for &position in &group.households {
                let device = fleet[position].device_id.to_string();
                let household = &device_household[&device];
                let (edge_box, village) = &households[household];
                assert_eq!(edge_box, &group.identity.box_id, "{device}");
                assert_eq!(
                    village,
                    &format!(
                        "{}-{}",
                        fleet[position].township.id, fleet[position].village.id
                    )
                );
            }
        }
        // One device per box: the households of the plain registry, each naming its box.
        let single = crate::load::group_households(&fleet, 1);
        let plain: BTreeMap<&str, String> = csv_files(&fleet, 500, 3).into_iter().collect();
        let boxed: BTreeMap<&str, String> = csv_files_with_boxes(&fleet, &single, 500, 3)
            .into_iter()
            .collect();
        for (file, text) in &plain {
            if *file != "households.csv" {
                assert_eq!(&boxed[file], text, "{file}");
            }
        }
        for (plain_line, boxed_line) in plain["households.csv"]
            .lines()
            .skip(1)
            .zip(boxed["households.csv"].lines().skip(1))
        {
            let edge_box = boxed_line
                .strip_prefix(plain_line)
                .and_then(|rest| rest.strip_prefix(','))
                .expect("the same row with the box appended");
            assert!(edge_box.starts_with("box-"), "{edge_box}");
        }
    }
}
