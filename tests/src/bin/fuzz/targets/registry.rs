//! Target `registry`: `gateway::registry::parse`, the CSV import of townships, villages,
//! vendors, households, devices, teams, technicians, contacts and parts, on a set of files and
//! the ids already in the database (part `known`: lines `table id`).
//!
//! For an import it accepts, checks what the module documents: every reference points at a row
//! of the batch or a known id, ids are unique per file and valid topic/URL ids, and an edge
//! box belongs to one household.

use std::collections::{HashMap, HashSet};

use gateway::registry::demo::{generate, to_csv_files, FleetHousehold};
use gateway::registry::{parse, KnownIds, RegistryData, FILES};

use super::{normalise, Target};
use crate::input::Input;
use crate::mutate::Dictionary;
use crate::rng::Rng;

pub struct Registry;

/// `gateway/src/registry/mod.rs` tests: `BASE`.
const BASE: &[(&str, &str)] = &[
    ("townships.csv", "id,name\nyanqing,延庆镇\n"),
    (
        "villages.csv",
        "id,township_id,name\nyanqing-dongguan,yanqing,东关村\n",
    ),
    ("vendors.csv", "id,name\naurora,Aurora\n"),
    (
        "households.csv",
        "id,village_id,address,resident,phone,vulnerable\nh1,yanqing-dongguan,东关村1号,王秀英,13800000001,true\n",
    ),
    (
        "devices.csv",
        "id,household_id,kind,brand,model,vendor_id,installed_on\nd1,h1,heat_pump,Aurora,KF,aurora,2022-03-01\n",
    ),
];

/// Every table, CRLF line ends, comments, quotes, extra and reordered columns.
const EVERY_TABLE: &[(&str, &str)] = &[
    (
        "townships.csv",
        "# townships\r\nid,name\r\nyanqing,延庆镇\r\nkangzhuang,\"康庄镇, 延庆区\"\r\n",
    ),
    (
        "villages.csv",
        "name,township_id,id,note\n东关村,yanqing,yanqing-dongguan,\"a \"\"quoted\"\" note\"\n西屯村,kangzhuang,kangzhuang-xitun,\n",
    ),
    ("vendors.csv", "id,name\naurora,Aurora\nlingyun,凌云\n"),
    (
        "households.csv",
        "id,village_id,address,resident,phone,vulnerable,edge_box\nh1, yanqing-dongguan ,东关村1号,王秀英,13800000001,是,box-1\nh2,kangzhuang-xitun,西屯村2号,李建国,13800000002,no,\n",
    ),
    (
        "devices.csv",
        "id,household_id,kind,brand,model,vendor_id,installed_on,warranty_years\nd1,h1,heat_pump,Aurora,KF,aurora,2020-02-29,5\nd2,h2,gas_boiler,凌云,L-24,lingyun,2023-12-31,\n",
    ),
    (
        "teams.csv",
        "id,name,kind,vendor_id,phone,townships\nt-aurora,Aurora 延庆,vendor,aurora,010-1,yanqing; kangzhuang\nt-third,第三方,third_party,,010-2,yanqing\nt-power,供电所,power_utility,,010-3,kangzhuang\n",
    ),
    (
        "technicians.csv",
        "id,team_id,name,phone,home_village_id\ntech-1,t-aurora,张伟,13900000001,yanqing-dongguan\ntech-2,t-third,刘洋,13900000002,\n",
    ),
    (
        "contacts.csv",
        "id,village_id,role,name,phone\nc1,yanqing-dongguan,caretaker,赵敏,13700000001\nc2,kangzhuang-xitun,electrician,孙强,13700000002\n",
    ),
    (
        "parts.csv",
        "code,name,price_cny\nfan,风机,120.5\nvalve,四通阀,99\npump,循环泵,1200.05\n",
    ),
];

fn files(pairs: &[(&str, &str)], known: &str) -> Input {
    let mut input = Input::new(pairs.iter().map(|(name, text)| (*name, text.as_bytes())));
    input.parts.push(crate::input::Part {
        name: "known".into(),
        bytes: known.as_bytes().to_vec(),
    });
    input
}

/// The ids of `data`, as a `known` part.
fn known_text(data: &RegistryData) -> String {
    let mut lines = Vec::new();
    lines.extend(data.townships.iter().map(|r| format!("townships {}", r.id)));
    lines.extend(data.villages.iter().map(|r| format!("villages {}", r.id)));
    lines.extend(data.vendors.iter().map(|r| format!("vendors {}", r.id)));
    lines.extend(
        data.households
            .iter()
            .map(|r| format!("households {}", r.id)),
    );
    lines.extend(data.teams.iter().map(|r| format!("teams {}", r.id)));
    lines.join("\n")
}

fn known_ids(text: &str) -> KnownIds {
    let mut known = KnownIds::default();
    for line in text.lines() {
        let Some((table, id)) = line.split_once(' ') else {
            continue;
        };
        let set = match table {
            "townships" => &mut known.townships,
            "villages" => &mut known.villages,
            "vendors" => &mut known.vendors,
            "households" => &mut known.households,
            "teams" => &mut known.teams,
            _ => continue,
        };
        set.insert(id.to_owned());
    }
    known
}

/// The files `tests::write_registry` writes for a few households (names that need quoting).
fn written_registry() -> Option<Vec<(String, String)>> {
    let dir = ::tests::scratch_dir("fuzz-seed-registry").ok()?;
    let mut households = vec![
        ::tests::RegistryHousehold::new("yanqing-dongguan-0001", "yanqing", "dongguan"),
        ::tests::RegistryHousehold::new("yanqing-dongguan-0002", "yanqing", "dongguan"),
        ::tests::RegistryHousehold::new("sihai-nanguan-0001", "sihai", "nanguan"),
    ];
    households[0].township_name = "延庆镇".into();
    households[0].village_name = "东关村, \"东\"".into();
    households[1].kind = "gas_boiler".into();
    households[1].profile = "lingyun-boiler".into();
    households[1].vulnerable = true;
    let written = ::tests::write_registry(&dir, &households)
        .ok()
        .and_then(|()| gateway::registry::read_dir(&dir).ok());
    let _ = std::fs::remove_dir_all(&dir);
    let mut files: Vec<(String, String)> = written?.into_iter().collect();
    files.sort();
    Some(files)
}

/// `registry::demo`'s registry of a small simulated fleet: every table filled.
fn demo_registry() -> RegistryData {
    let places = [
        ("yanqing", "延庆镇", "dongguan", "东关村"),
        ("yanqing", "延庆镇", "xitun", "西屯村"),
        ("kangzhuang", "康庄镇", "zhangxinbao", "张辛堡村"),
    ];
    let fleet: Vec<FleetHousehold> = (0..8)
        .map(|i| {
            let (township, township_name, village, village_name) = places[i % places.len()];
            let boiler = i % 3 == 0;
            FleetHousehold {
                device_id: format!("{township}-{village}-{i:04}"),
                township: township.into(),
                township_name: township_name.into(),
                village: village.into(),
                village_name: village_name.into(),
                kind: if boiler { "gas_boiler" } else { "heat_pump" }.into(),
                brand: if boiler { "Lingyun" } else { "Aurora" }.into(),
                model: "M-1".into(),
                vulnerable: i % 4 == 1,
            }
        })
        .collect();
    generate(&fleet, 7)
}

/// Panics with a "check failed" message unless `condition`.
fn check(condition: bool, what: impl FnOnce() -> String) {
    assert!(condition, "check failed: accepted import: {}", what());
}

/// What `registry::parse` promises of an import it accepts.
fn check_accepted(data: &RegistryData, known: &KnownIds) {
    let ids = |rows: Vec<&String>, known: &HashSet<String>| -> HashSet<String> {
        rows.into_iter()
            .cloned()
            .chain(known.iter().cloned())
            .collect()
    };
    let townships = ids(
        data.townships.iter().map(|r| &r.id).collect(),
        &known.townships,
    );
    let villages = ids(
        data.villages.iter().map(|r| &r.id).collect(),
        &known.villages,
    );
    let vendors = ids(data.vendors.iter().map(|r| &r.id).collect(), &known.vendors);
    let households = ids(
        data.households.iter().map(|r| &r.id).collect(),
        &known.households,
    );
    let teams = ids(data.teams.iter().map(|r| &r.id).collect(), &known.teams);
    for village in &data.villages {
        check(townships.contains(&village.township_id), || {
            format!("village {:?} of unknown township", village.id)
        });
    }
    let mut boxes = HashSet::new();
    for household in &data.households {
        check(villages.contains(&household.village_id), || {
            format!("household {:?} of unknown village", household.id)
        });
        check(boxes.insert(household.edge_box_id().to_owned()), || {
            format!("edge box {:?} of two households", household.edge_box_id())
        });
    }
    for device in &data.devices {
        check(
            households.contains(&device.household_id) && vendors.contains(&device.vendor_id),
            || format!("device {:?} of unknown household or vendor", device.id),
        );
        check(
            device.kind == "heat_pump" || device.kind == "gas_boiler",
            || format!("device kind {:?}", device.kind),
        );
    }
    for team in &data.teams {
        check(
            team.vendor_id.as_ref().is_none_or(|v| vendors.contains(v))
                && team.townships.iter().all(|t| townships.contains(t)),
            || format!("team {:?} of unknown vendor or township", team.id),
        );
    }
    for technician in &data.technicians {
        check(
            teams.contains(&technician.team_id)
                && technician
                    .home_village_id
                    .as_ref()
                    .is_none_or(|v| villages.contains(v)),
            || format!("technician {:?} of unknown team or village", technician.id),
        );
    }
    for contact in &data.contacts {
        check(
            villages.contains(&contact.village_id)
                && (contact.role == "caretaker" || contact.role == "electrician"),
            || format!("contact {:?} of unknown village or role", contact.id),
        );
    }
    for part in &data.parts {
        check(part.price_cents >= 0, || {
            format!("part {:?} price", part.code)
        });
    }
    let tables: [(&str, Vec<&str>); 9] = [
        (
            "townships",
            data.townships.iter().map(|r| r.id.as_str()).collect(),
        ),
        (
            "villages",
            data.villages.iter().map(|r| r.id.as_str()).collect(),
        ),
        (
            "vendors",
            data.vendors.iter().map(|r| r.id.as_str()).collect(),
        ),
        (
            "households",
            data.households.iter().map(|r| r.id.as_str()).collect(),
        ),
        (
            "devices",
            data.devices.iter().map(|r| r.id.as_str()).collect(),
        ),
        ("teams", data.teams.iter().map(|r| r.id.as_str()).collect()),
        (
            "technicians",
            data.technicians.iter().map(|r| r.id.as_str()).collect(),
        ),
        (
            "contacts",
            data.contacts.iter().map(|r| r.id.as_str()).collect(),
        ),
        (
            "parts",
            data.parts.iter().map(|r| r.code.as_str()).collect(),
        ),
    ];
    for (table, ids) in tables {
        let mut seen = HashSet::new();
        for id in ids {
            check(seen.insert(id), || format!("{table}: {id:?} twice"));
            check(wire::DeviceId::parse(id).is_ok(), || {
                format!("{table}: {id:?} is not an id")
            });
        }
    }
}

impl Target for Registry {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn main_part(&self) -> &'static str {
        "devices.csv"
    }

    fn seeds(&self) -> Vec<Input> {
        let mut seeds = vec![
            files(BASE, ""),
            files(EVERY_TABLE, ""),
            // Devices referring to rows already in the database (registry tests).
            files(
                &[(
                    "devices.csv",
                    "id,household_id,kind,brand,model,vendor_id,installed_on\nd9,h9,gas_boiler,L,X,aurora,2019-11-30\n",
                )],
                "households h9\nvendors aurora",
            ),
        ];
        if let Some(written) = written_registry() {
            let pairs: Vec<(&str, &str)> = written
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str()))
                .collect();
            seeds.push(files(&pairs, ""));
        }
        let demo = demo_registry();
        let demo_files = to_csv_files(&demo);
        let pairs: Vec<(&str, &str)> = demo_files
            .iter()
            .map(|(name, text)| (*name, text.as_str()))
            .collect();
        seeds.push(files(&pairs, ""));
        // Each file alone, with the rest of its registry as known ids: small and fast.
        let known = known_text(&demo);
        for (name, text) in &demo_files {
            seeds.push(files(&[(name, text)], &known));
        }
        seeds
    }

    fn dictionary(&self, _seeds: &[Input]) -> Dictionary {
        let mut dictionary = Dictionary::new(
            &[
                "id",
                "name",
                "township_id",
                "village_id",
                "household_id",
                "vendor_id",
                "team_id",
                "home_village_id",
                "address",
                "resident",
                "phone",
                "vulnerable",
                "edge_box",
                "kind",
                "brand",
                "model",
                "installed_on",
                "warranty_years",
                "townships",
                "role",
                "code",
                "price_cny",
                "heat_pump",
                "gas_boiler",
                "vendor",
                "third_party",
                "power_utility",
                "gas_utility",
                "caretaker",
                "electrician",
                "true",
                "false",
                "yes",
                "是",
                "否",
                "TRUE",
                "2024-02-29",
                "2023-02-29",
                "0000-01-01",
                "0001-01-01",
                "9999-12-31",
                "10000-01-01",
                "2024-13-01",
                "2024-1-1",
                "-2024-01-01",
                "120.50",
                "120.505",
                "-0.5",
                "92233720368547758.07",
                "92233720368547758.08",
                ",",
                ";",
                "\"",
                "\"\"",
                "\r\n",
                "\n",
                "#",
                "\u{feff}",
                "yanqing",
                "yanqing-dongguan",
                "aurora",
                "h1",
                "d1",
                "box-1",
            ],
            &[("\"", "\""), (",", ""), (";", "")],
        );
        dictionary.extend(FILES);
        dictionary
    }

    fn weight(&self, part: &str) -> usize {
        if part == "known" {
            1
        } else {
            4
        }
    }

    fn mutate_parts(&self, rng: &mut Rng, input: &mut Input, corpus: &[Input]) -> bool {
        let csv: Vec<usize> = (0..input.parts.len())
            .filter(|i| input.parts[*i].name.ends_with(".csv"))
            .collect();
        match rng.below(4) {
            0 if csv.len() > 1 => {
                let index = csv[rng.below(csv.len())];
                input.parts.remove(index);
                true
            }
            1 => {
                // A file of another input that this one does not have.
                let Some(other) = rng.pick(corpus) else {
                    return false;
                };
                let Some(part) = rng.pick(&other.parts).cloned() else {
                    return false;
                };
                if input.get(&part.name).is_some() {
                    return false;
                }
                input.parts.push(part);
                true
            }
            2 => {
                // A file under another file's name.
                let free: Vec<&str> = FILES
                    .iter()
                    .copied()
                    .filter(|name| input.get(name).is_none())
                    .collect();
                match (csv.get(rng.below(csv.len())), rng.pick(&free)) {
                    (Some(&index), Some(name)) => {
                        input.parts[index].name = (*name).to_owned();
                        true
                    }
                    _ => false,
                }
            }
            _ => {
                let a = rng.below(input.parts.len());
                let b = rng.below(input.parts.len());
                if a == b {
                    return false;
                }
                let bytes = std::mem::take(&mut input.parts[a].bytes);
                input.parts[a].bytes = std::mem::replace(&mut input.parts[b].bytes, bytes);
                true
            }
        }
    }

    fn run(&self, input: &Input) -> String {
        let files: HashMap<String, String> = input
            .parts
            .iter()
            .filter(|part| part.name.ends_with(".csv"))
            .map(|part| (part.name.clone(), input.text(&part.name).into_owned()))
            .collect();
        let known = known_ids(&input.text("known"));
        match parse(&files, &known) {
            Ok(data) => {
                check_accepted(&data, &known);
                let filled = [
                    !data.townships.is_empty(),
                    !data.villages.is_empty(),
                    !data.vendors.is_empty(),
                    !data.households.is_empty(),
                    !data.devices.is_empty(),
                    !data.teams.is_empty(),
                    !data.technicians.is_empty(),
                    !data.contacts.is_empty(),
                    !data.parts.is_empty(),
                ];
                let mask: String = filled.iter().map(|f| if *f { '1' } else { '0' }).collect();
                format!("ok:{mask}")
            }
            Err(error) => {
                // The header it lists is the input's own text.
                let message = match error.message.split_once(" (the header has:") {
                    Some((reason, _)) => reason,
                    None => &error.message,
                };
                format!("err:{}:{} {}", error.file, error.field, normalise(message))
            }
        }
    }
}
