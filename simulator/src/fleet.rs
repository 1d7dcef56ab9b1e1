//! Deterministic fleet generation: households spread over Yanqing's 15 townships and their
//! villages, each with a heater kind, a register-map profile, a building and a resident.
//!
//! The same `(households, seed, profiles)` always gives the same fleet, so a test, a benchmark
//! and an operator's demo all talk about the same `yanqing-dongguan-0007`.

use std::sync::Arc;

use edge_agent::profile::Profile;
use serde::{Deserialize, Serialize};
use wire::{DeviceId, DeviceKind, TownshipId};

use crate::rng::Rng;

/// One of Yanqing's 15 townships (11 towns 镇 and 4 xiang 乡).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Township {
    /// Pinyin id, a valid [`TownshipId`].
    pub id: &'static str,
    /// Chinese name, e.g. 延庆镇.
    pub name: &'static str,
    /// Mountain townships are colder than the Yanqing basin, in kelvin.
    pub climate_offset_c: f64,
    pub villages: &'static [Village],
}

/// A village of a township.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Village {
    /// Pinyin id, unique within its township.
    pub id: &'static str,
    /// Chinese name, e.g. 东关村.
    pub name: &'static str,
}

const fn v(id: &'static str, name: &'static str) -> Village {
    Village { id, name }
}

/// The 15 townships with a few villages each (real township names, plausible village names).
pub const TOWNSHIPS: [Township; 15] = [
    Township {
        id: "yanqing",
        name: "延庆镇",
        climate_offset_c: 0.0,
        villages: &[
            v("dongguan", "东关村"),
            v("xiguan", "西关村"),
            v("beiguan", "北关村"),
            v("jiangjiabao", "蒋家堡村"),
            v("shuangying", "双营村"),
            v("wangquanying", "王泉营村"),
        ],
    },
    Township {
        id: "kangzhuang",
        name: "康庄镇",
        climate_offset_c: 0.3,
        villages: &[
            v("kangzhuang", "康庄村"),
            v("xiaofengying", "小丰营村"),
            v("xihongsi", "西红寺村"),
            v("taipingzhuang", "太平庄村"),
            v("daying", "大营村"),
        ],
    },
    Township {
        id: "badaling",
        name: "八达岭镇",
        climate_offset_c: -1.0,
        villages: &[
            v("chadao", "岔道村"),
            v("shixia", "石峡村"),
            v("yingchengzi", "营城子村"),
            v("bangshuiyu", "帮水峪村"),
        ],
    },
    Township {
        id: "yongning",
        name: "永宁镇",
        climate_offset_c: -0.5,
        villages: &[
            v("fumin", "阜民村"),
            v("nanguan", "南关村"),
            v("xishangou", "西山沟村"),
            v("xiaozhuangke", "小庄科村"),
            v("konghuaying", "孔化营村"),
            v("beicun", "北村"),
        ],
    },
    Township {
        id: "jiuxian",
        name: "旧县镇",
        climate_offset_c: -0.4,
        villages: &[
            v("jiuxian", "旧县村"),
            v("donglongwan", "东龙湾村"),
            v("gucheng", "古城村"),
            v("dabailao", "大柏老村"),
        ],
    },
    Township {
        id: "zhangshanying",
        name: "张山营镇",
        climate_offset_c: -0.6,
        villages: &[
            v("zhangshanying", "张山营村"),
            v("shangbanquan", "上板泉村"),
            v("xiwuliying", "西五里营村"),
            v("yuhuangmiao", "玉皇庙村"),
            v("hujiaying", "胡家营村"),
        ],
    },
    Township {
        id: "sihai",
        name: "四海镇",
        climate_offset_c: -1.8,
        villages: &[
            v("sihai", "四海村"),
            v("caishihe", "菜食河村"),
            v("qianshan", "前山村"),
            v("nanwan", "南湾村"),
        ],
    },
    Township {
        id: "qianjiadian",
        name: "千家店镇",
        climate_offset_c: -2.0,
        villages: &[
            v("qianjiadian", "千家店村"),
            v("hongqidian", "红旗甸村"),
            v("xiadelongwan", "下德龙湾村"),
            v("huamu", "花木村"),
        ],
    },
    Township {
        id: "shenjiaying",
        name: "沈家营镇",
        climate_offset_c: 0.0,
        villages: &[
            v("shenjiaying", "沈家营村"),
            v("hedong", "河东村"),
            v("caoguanying", "曹官营村"),
            v("lianjiaying", "连家营村"),
            v("mapiying", "马匹营村"),
        ],
    },
    Township {
        id: "dayushu",
        name: "大榆树镇",
        climate_offset_c: 0.2,
        villages: &[
            v("dayushu", "大榆树村"),
            v("chengjiaying", "程家营村"),
            v("xiatun", "下屯村"),
            v("yuejiaying", "岳家营村"),
        ],
    },
    Township {
        id: "jingzhuang",
        name: "井庄镇",
        climate_offset_c: -0.8,
        villages: &[
            v("jingzhuang", "井庄村"),
            v("liugou", "柳沟村"),
            v("wangmuying", "王木营村"),
            v("aiguanying", "艾官营村"),
        ],
    },
    Township {
        id: "dazhuangke",
        name: "大庄科乡",
        climate_offset_c: -1.5,
        villages: &[
            v("dazhuangke", "大庄科村"),
            v("shatanggou", "沙塘沟村"),
            v("tielu", "铁炉村"),
            v("hanjiachuan", "汉家川村"),
        ],
    },
    Township {
        id: "liubinpu",
        name: "刘斌堡乡",
        climate_offset_c: -1.2,
        villages: &[
            v("liubinpu", "刘斌堡村"),
            v("yingdonggou", "营东沟村"),
            v("guanxigou", "观西沟村"),
            v("yaoguanling", "姚官岭村"),
        ],
    },
    Township {
        id: "xiangying",
        name: "香营乡",
        climate_offset_c: -1.0,
        villages: &[
            v("xiangying", "香营村"),
            v("qujiayao", "屈家窑村"),
            v("shangguang", "上垙村"),
            v("xiaochuan", "小川村"),
        ],
    },
    Township {
        id: "zhenzhuquan",
        name: "珍珠泉乡",
        climate_offset_c: -2.2,
        villages: &[
            v("zhenzhuquan", "珍珠泉村"),
            v("nantianmen", "南天门村"),
            v("xiahualou", "下花楼村"),
            v("cangmidao", "仓米道村"),
        ],
    },
];

/// The kind of house, which sets how fast it loses heat and how much heat it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Building {
    /// Single-storey brick house without insulation (老砖房), about 90 m².
    OldBrick,
    /// Brick house renovated with wall insulation and double glazing (节能改造).
    Renovated,
    /// Large courtyard house with several heated rooms (大院).
    LargeCourtyard,
}

impl Building {
    /// Nominal heat-loss coefficient UA in W/K (before the per-house variation).
    pub fn heat_loss_w_per_k(self) -> f64 {
        match self {
            Building::OldBrick => 125.0,
            Building::Renovated => 85.0,
            Building::LargeCourtyard => 160.0,
        }
    }

    /// Range of the thermal time constant C/UA of such a house, hours: rural brick houses hold
    /// their heat for 15-60 h, renovated ones longest, old single-storey ones least.
    pub fn time_constant_h(self) -> (f64, f64) {
        match self {
            Building::OldBrick => (15.0, 35.0),
            Building::Renovated => (25.0, 60.0),
            Building::LargeCourtyard => (20.0, 45.0),
        }
    }

    /// Nominal effective thermal capacity C in J/K (air, furniture, inner walls); a generated
    /// house draws its time constant from [`Building::time_constant_h`] instead.
    pub fn thermal_capacity_j_per_k(self) -> f64 {
        match self {
            Building::OldBrick => 10.0e6,
            Building::Renovated => 8.0e6,
            Building::LargeCourtyard => 14.0e6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Building::OldBrick => "old_brick",
            Building::Renovated => "renovated",
            Building::LargeCourtyard => "large_courtyard",
        }
    }
}

/// Share of heat pumps in the fleet (the rest are gas boilers).
pub const HEAT_PUMP_SHARE: f64 = 0.7;
/// Share of households where an elderly person lives alone.
pub const VULNERABLE_SHARE: f64 = 0.2;

/// One generated household, before it is given a Modbus listener.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdSpec {
    /// Position in the fleet, 0-based.
    pub index: usize,
    pub device_id: DeviceId,
    /// The township's id (the MQTT routing key).
    pub township_id: TownshipId,
    pub township: &'static Township,
    pub village: &'static Village,
    pub kind: DeviceKind,
    pub profile: Arc<Profile>,
    pub building: Building,
    /// This house's heat-loss coefficient UA in W/K.
    pub heat_loss_w_per_k: f64,
    /// This house's thermal capacity C in J/K.
    pub thermal_capacity_j_per_k: f64,
    /// Thermostat set point in °C.
    pub setpoint_c: f64,
    /// Elderly resident living alone: a failed heater here is a safety issue.
    pub vulnerable: bool,
    /// Local outdoor temperature offset against the district (township plus site), in K.
    pub outdoor_offset_c: f64,
    /// Seed of this household's own random stream (sensor noise, counters, defrost timing).
    pub model_seed: u64,
}

/// Why a fleet cannot be generated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetError {
    #[error("no register-map profiles were given, so no household can have a device")]
    NoProfiles,
    #[error("generated identifier {0:?} is not a valid id")]
    BadId(String),
}

/// The profiles of each kind, sorted by id, dealt round-robin to the households of that kind.
struct ProfileDeck {
    heat_pumps: Vec<Arc<Profile>>,
    boilers: Vec<Arc<Profile>>,
    heat_pumps_dealt: usize,
    boilers_dealt: usize,
}

impl ProfileDeck {
    fn new(profiles: &[Arc<Profile>]) -> Result<ProfileDeck, FleetError> {
        let by_kind = |kind: DeviceKind| {
            let mut of_kind: Vec<Arc<Profile>> = profiles
                .iter()
                .filter(|p| p.kind == kind)
                .cloned()
                .collect();
            of_kind.sort_by(|a, b| a.id.cmp(&b.id));
            of_kind
        };
        let heat_pumps = by_kind(DeviceKind::HeatPump);
        let boilers = by_kind(DeviceKind::GasBoiler);
        if heat_pumps.is_empty() && boilers.is_empty() {
            return Err(FleetError::NoProfiles);
        }
        Ok(ProfileDeck {
            heat_pumps,
            boilers,
            heat_pumps_dealt: 0,
            boilers_dealt: 0,
        })
    }

    /// The kind a household gets (the one it wants unless no profile of it is loaded) and
    /// the next profile of that kind.
    fn deal(&mut self, wants_heat_pump: bool) -> (DeviceKind, Arc<Profile>) {
        let kind = match (
            wants_heat_pump,
            self.heat_pumps.is_empty(),
            self.boilers.is_empty(),
        ) {
            (true, false, _) | (false, false, true) => DeviceKind::HeatPump,
            _ => DeviceKind::GasBoiler,
        };
        let profile = match kind {
            DeviceKind::HeatPump => {
                self.heat_pumps_dealt += 1;
                &self.heat_pumps[(self.heat_pumps_dealt - 1) % self.heat_pumps.len()]
            }
            DeviceKind::GasBoiler => {
                self.boilers_dealt += 1;
                &self.boilers[(self.boilers_dealt - 1) % self.boilers.len()]
            }
        };
        (kind, Arc::clone(profile))
    }
}

/// A household's house and resident, drawn in this order from the fleet's stream.
struct Dwelling {
    building: Building,
    heat_loss_w_per_k: f64,
    thermal_capacity_j_per_k: f64,
    setpoint_c: f64,
    vulnerable: bool,
    outdoor_offset_c: f64,
    model_seed: u64,
}

impl Dwelling {
    fn draw(rng: &mut Rng, township: &Township) -> Dwelling {
        let building = match rng.unit() {
            x if x < 0.5 => Building::OldBrick,
            x if x < 0.8 => Building::Renovated,
            _ => Building::LargeCourtyard,
        };
        // Every house its own loss and its own thermal mass: UA within -15..+20 % of the
        // building's, and a time constant C/UA drawn in the building's range.
        let heat_loss_w_per_k = building.heat_loss_w_per_k() * rng.uniform(0.85, 1.2);
        let (tau_low_h, tau_high_h) = building.time_constant_h();
        let thermal_capacity_j_per_k =
            heat_loss_w_per_k * rng.uniform(tau_low_h, tau_high_h) * 3600.0;
        let setpoint_c = [19.0, 19.5, 20.0, 20.0, 20.5, 21.0][rng.index(6)];
        let vulnerable = rng.chance(VULNERABLE_SHARE);
        let outdoor_offset_c = township.climate_offset_c + rng.uniform(-0.5, 0.5);
        let model_seed = rng.next_u64();
        Dwelling {
            building,
            heat_loss_w_per_k,
            thermal_capacity_j_per_k,
            setpoint_c,
            vulnerable,
            outdoor_offset_c,
            model_seed,
        }
    }
}

/// Generates `households` households from `seed`. Profiles are assigned round-robin (by
/// profile id order) among those of the household's kind; if no profile of a kind is loaded,
/// every household gets the other kind. Townships are dealt round-robin in a seeded order, so
/// every township has a household once `households >= 15`.
pub fn generate(
    households: usize,
    seed: u64,
    profiles: &[Arc<Profile>],
) -> Result<Vec<HouseholdSpec>, FleetError> {
    let mut deck = ProfileDeck::new(profiles)?;

    let mut rng = Rng::derive(seed, 0xF1EE7);
    let mut township_order: Vec<usize> = (0..TOWNSHIPS.len()).collect();
    rng.shuffle(&mut township_order);

    let mut village_counters: std::collections::HashMap<(&str, &str), u32> =
        std::collections::HashMap::new();
    let mut fleet = Vec::with_capacity(households);
    for index in 0..households {
        let township = &TOWNSHIPS[township_order[index % TOWNSHIPS.len()]];
        let village = &township.villages[rng.index(township.villages.len())];
        let (kind, profile) = deck.deal(rng.chance(HEAT_PUMP_SHARE));
        let dwelling = Dwelling::draw(&mut rng, township);

        let counter = village_counters
            .entry((township.id, village.id))
            .or_insert(0);
        *counter += 1;
        let raw_id = format!("{}-{}-{:04}", township.id, village.id, counter);
        let device_id = DeviceId::parse(&raw_id).map_err(|_| FleetError::BadId(raw_id))?;
        let township_id = TownshipId::parse(township.id)
            .map_err(|_| FleetError::BadId(township.id.to_owned()))?;

        fleet.push(HouseholdSpec {
            index,
            device_id,
            township_id,
            township,
            village,
            kind,
            profile,
            building: dwelling.building,
            heat_loss_w_per_k: dwelling.heat_loss_w_per_k,
            thermal_capacity_j_per_k: dwelling.thermal_capacity_j_per_k,
            setpoint_c: dwelling.setpoint_c,
            vulnerable: dwelling.vulnerable,
            outdoor_offset_c: dwelling.outdoor_offset_c,
            model_seed: dwelling.model_seed,
        });
    }
    Ok(fleet)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    pub(crate) fn shipped_profiles() -> Vec<Arc<Profile>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let mut profiles = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("profiles folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                profiles.push(Arc::new(Profile::load(&path).expect("shipped profile")));
            }
        }
        profiles
    }

    #[test]
    fn the_same_households_and_seed_give_the_same_fleet() {
        let profiles = shipped_profiles();
        let a = generate(200, 7, &profiles).expect("fleet");
        let b = generate(200, 7, &profiles).expect("fleet");
        assert_eq!(a, b);
        let c = generate(200, 8, &profiles).expect("fleet");
        assert_ne!(a, c, "another seed gives another fleet");
    }

    #[test]
    fn fifteen_households_cover_all_fifteen_townships() {
        let profiles = shipped_profiles();
        for seed in 0..20 {
            let fleet = generate(15, seed, &profiles).expect("fleet");
            let townships: BTreeSet<&str> = fleet.iter().map(|h| h.township.id).collect();
            assert_eq!(townships.len(), 15, "seed {seed}");
        }
    }

    #[test]
    fn device_ids_are_unique_valid_and_name_their_village() {
        let profiles = shipped_profiles();
        let fleet = generate(1000, 3, &profiles).expect("fleet");
        let ids: BTreeSet<&str> = fleet.iter().map(|h| h.device_id.as_str()).collect();
        assert_eq!(ids.len(), fleet.len());
        for h in &fleet {
            let prefix = format!("{}-{}-", h.township.id, h.village.id);
            assert!(h.device_id.as_str().starts_with(&prefix), "{}", h.device_id);
            assert_eq!(h.profile.kind, h.kind);
        }
        assert!(
            ids.contains("yanqing-dongguan-0001")
                || fleet.iter().all(|h| h.village.id != "dongguan")
        );
    }

    #[test]
    fn shares_of_kinds_and_vulnerable_residents_are_plausible() {
        let profiles = shipped_profiles();
        let fleet = generate(2000, 11, &profiles).expect("fleet");
        let share = |f: &dyn Fn(&HouseholdSpec) -> bool| {
            fleet.iter().filter(|h| f(h)).count() as f64 / fleet.len() as f64
        };
        let heat_pumps = share(&|h| h.kind == DeviceKind::HeatPump);
        let vulnerable = share(&|h| h.vulnerable);
        assert!(
            (0.65..0.75).contains(&heat_pumps),
            "heat pumps {heat_pumps}"
        );
        assert!(
            (0.16..0.24).contains(&vulnerable),
            "vulnerable {vulnerable}"
        );
        let used: BTreeSet<&str> = fleet.iter().map(|h| h.profile.id.as_str()).collect();
        assert_eq!(used.len(), profiles.len(), "round-robin uses every profile");
    }

    #[test]
    fn every_township_and_village_id_is_valid_and_unique() {
        let mut townships = BTreeSet::new();
        for t in &TOWNSHIPS {
            assert!(TownshipId::parse(t.id).is_ok(), "{}", t.id);
            assert!(townships.insert(t.id));
            assert!((3..=6).contains(&t.villages.len()), "{}", t.id);
            let villages: BTreeSet<&str> = t.villages.iter().map(|v| v.id).collect();
            assert_eq!(villages.len(), t.villages.len(), "{}", t.id);
            for v in t.villages {
                assert!(DeviceId::parse(&format!("{}-{}-0001", t.id, v.id)).is_ok());
            }
        }
    }

    #[test]
    fn houses_have_their_own_realistic_time_constants() {
        let profiles = shipped_profiles();
        let fleet = generate(500, 5, &profiles).expect("fleet");
        let taus: Vec<f64> = fleet
            .iter()
            .map(|h| h.thermal_capacity_j_per_k / h.heat_loss_w_per_k / 3600.0)
            .collect();
        for (h, tau) in fleet.iter().zip(&taus) {
            assert!((15.0..=60.0).contains(tau), "{}: τ {tau:.1} h", h.device_id);
            let (low, high) = h.building.time_constant_h();
            assert!((low..=high).contains(tau));
        }
        let (min, max) = taus
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &t| (a.min(t), b.max(t)));
        assert!(min < 20.0 && max > 50.0, "τ from {min:.1} to {max:.1} h");
    }

    #[test]
    fn an_empty_profile_list_is_refused() {
        assert_eq!(generate(3, 1, &[]), Err(FleetError::NoProfiles));
    }
}
