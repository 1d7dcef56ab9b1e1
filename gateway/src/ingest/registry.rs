//! The registry as ingest sees it ([`RegistryCheck`]): a reading is accepted only from a
//! registered device, published under its registered township, and, under a tenant prefix,
//! only from the box of the device's household. Everything else is a counted reject that never
//! reaches the fleet, the rules or the alert list; refused devices are listed for installers
//! (`GET /api/v1/registry/unregistered`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::tenants::{self, Directory, Published, TenantError};
use crate::events::{InternalEvent, StoreFailed};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::orders::OrderService;

use super::{Decoded, Reject};

/// A registered device as the rules register it: its kind, township, village, household,
/// vulnerability and the tag of its site type (`site:{type}`), so fleet rules count its
/// household and the pack's overrides for vulnerable households and site types apply.
/// `None` for an id that is not a device id.
pub fn rules_device(
    row: &crate::orders::store::RegisteredDevice,
) -> Option<(wire::DeviceId, rules::DeviceInfo)> {
    let id = wire::DeviceId::parse(&row.id).ok()?;
    let kind = match row.kind.as_str() {
        "heat_pump" => Some(wire::DeviceKind::HeatPump),
        "gas_boiler" => Some(wire::DeviceKind::GasBoiler),
        _ => None,
    };
    Some((
        id,
        rules::DeviceInfo {
            kind,
            township: Some(row.township.clone()),
            village: Some(row.village.clone()),
            vulnerable: row.vulnerable,
            household: Some(row.household.clone()),
            tags: vec![row.site_type.tag()],
        },
    ))
}

/// How long the directory is trusted before it is read again (a box re-keyed or a device moved
/// in the registry takes effect within this).
pub const DIRECTORY_MAX_AGE: Duration = Duration::from_secs(30);
/// A refused message reads the directory again if it is older than this (a device just added
/// to the registry is accepted at once), at most once per this: a flood of invented ids costs
/// one registry read per this.
pub const DIRECTORY_RECHECK: Duration = Duration::from_secs(5);

/// The directory and when it was read (loaded with the first message), and where it reads it,
/// counts store errors and lists refused devices.
pub struct RegistryCheck {
    directory: Option<(Directory, Instant)>,
    orders: OrderService,
    metrics: Arc<Metrics>,
    fleet: Arc<Fleet>,
}

impl RegistryCheck {
    pub fn new(orders: OrderService, metrics: Arc<Metrics>, fleet: Arc<Fleet>) -> Self {
        Self {
            directory: None,
            orders,
            metrics,
            fleet,
        }
    }

    /// Whether `decoded`, published under `tenant` (if any), may be accepted. A status keeps
    /// only its registered devices (the others are listed as unregistered); a reading of an
    /// unregistered device, or under another township's topic, is refused.
    pub async fn check(
        &mut self,
        topic: &[u8],
        tenant: Option<&str>,
        decoded: Decoded,
        now_ms: i64,
    ) -> Result<Decoded, Reject> {
        if matches!(decoded, Decoded::Ignored) {
            return Ok(decoded);
        }
        if self.age().is_none_or(|age| age >= DIRECTORY_MAX_AGE) {
            self.reload().await;
        }
        let mut verdict = self.verdict(topic, tenant, &decoded);
        if verdict.is_err() && self.age().is_none_or(|age| age >= DIRECTORY_RECHECK) {
            self.reload().await;
            verdict = self.verdict(topic, tenant, &decoded);
        }
        if let Err(reject) = &verdict {
            if let (Reject::Unregistered { device, township }, Decoded::Reading(..)) =
                (reject, &decoded)
            {
                let edge_box = tenant.and_then(tenants::box_of_tenant);
                self.fleet
                    .unregistered_seen(device, township, edge_box.as_deref(), now_ms);
            }
        }
        verdict?;
        Ok(match decoded {
            Decoded::Status(mut status, township) => {
                let directory = self.directory();
                let listed = status.devices.len();
                status.devices.retain(|device| {
                    let registered =
                        directory.is_some_and(|d| d.township_of(device.as_str()).is_some());
                    if !registered {
                        self.fleet.unregistered_seen(
                            device.as_str(),
                            &township,
                            Some(&status.agent_id),
                            now_ms,
                        );
                    }
                    registered
                });
                if status.devices.len() < listed {
                    self.metrics.reject("unregistered_device");
                }
                Decoded::Status(status, township)
            }
            other => other,
        })
    }

    fn age(&self) -> Option<Duration> {
        self.directory.as_ref().map(|(_, read)| read.elapsed())
    }

    fn directory(&self) -> Option<&Directory> {
        self.directory.as_ref().map(|(directory, _)| directory)
    }

    /// The verdict on the directory as it is.
    fn verdict(&self, topic: &[u8], tenant: Option<&str>, decoded: &Decoded) -> Result<(), Reject> {
        let topic_text = || String::from_utf8_lossy(topic).into_owned();
        if let Some(tenant) = tenant {
            let published = match decoded {
                Decoded::Reading(reading, _) => Published::Reading {
                    device: reading.device_id.as_str(),
                },
                Decoded::Status(status, _) => Published::Status {
                    agent: &status.agent_id,
                    devices: &status.devices,
                },
                Decoded::Ignored => return Ok(()),
            };
            let checked = match self.directory() {
                Some(directory) => directory.check(tenant, published),
                None => Err(TenantError::UnknownBox(
                    tenants::box_of_tenant(tenant).unwrap_or_else(|| tenant.to_owned()),
                )),
            };
            checked.map_err(|error| Reject::Tenant {
                topic: topic_text(),
                error,
            })?;
        }
        if let Decoded::Reading(reading, township) = decoded {
            let device = reading.device_id.as_str();
            match self.directory().and_then(|d| d.township_of(device)) {
                None => {
                    return Err(Reject::Unregistered {
                        device: device.to_owned(),
                        township: township.clone(),
                    })
                }
                Some(registered) if registered != township => {
                    return Err(Reject::TownshipMismatch {
                        device: device.to_owned(),
                        registered: registered.to_owned(),
                        topic: topic_text(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Reads the directory from the registry; on a store error the old one stays (or none:
    /// every reading is then refused). Devices registered since are taken off the
    /// unregistered list.
    async fn reload(&mut self) {
        let read = self
            .orders
            .with_store(|store| Ok((store.tenant_directory()?, store.registered_devices()?)))
            .await;
        match read {
            Ok(((households, devices), registered)) => {
                let directory = Directory::new(households, devices).with_townships(
                    registered
                        .into_iter()
                        .map(|device| (device.id, device.township)),
                );
                for listed in self.fleet.unregistered() {
                    if directory.township_of(&listed.device_id).is_some() {
                        self.fleet.unregistered_resolved(&listed.device_id);
                    }
                }
                tracing::debug!(
                    boxes = directory.boxes(),
                    devices = directory.devices(),
                    "registry directory read"
                );
                self.directory = Some((directory, Instant::now()));
            }
            Err(error) => {
                StoreFailed {
                    what: "the registry directory could not be read; keeping the last one",
                    error: &error,
                }
                .emit(&self.metrics);
                if let Some((_, read)) = self.directory.as_mut() {
                    *read = Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::SiteType;

    #[test]
    fn a_registered_device_reaches_the_rules_with_its_household_and_site() {
        let row = crate::orders::store::RegisteredDevice {
            id: "yanqing-xiguan-0007".to_owned(),
            kind: "heat_pump".to_owned(),
            township: "yanqing".to_owned(),
            village: "yanqing-xiguan".to_owned(),
            vulnerable: true,
            household: "hh-0007".to_owned(),
            site_type: SiteType::Greenhouse,
        };
        let (id, info) = rules_device(&row).expect("a device id");
        assert_eq!(id.as_str(), "yanqing-xiguan-0007");
        assert_eq!(info.kind, Some(wire::DeviceKind::HeatPump));
        assert_eq!(info.village.as_deref(), Some("yanqing-xiguan"));
        assert_eq!(info.household.as_deref(), Some("hh-0007"));
        assert!(info.vulnerable);
        assert_eq!(info.tags, ["site:greenhouse"]);
        let bad = crate::orders::store::RegisteredDevice {
            id: "Not An Id".to_owned(),
            ..row
        };
        assert!(rules_device(&bad).is_none());
    }

    #[test]
    fn one_device_is_read_as_all_are() {
        let fleet = crate::registry::demo::FleetHousehold {
            device_id: "yanqing-xiguan-0001".into(),
            township: "yanqing".into(),
            township_name: "延庆镇".into(),
            village: "xiguan".into(),
            village_name: "西关村".into(),
            kind: "heat_pump".into(),
            brand: "Aurora".into(),
            model: "X".into(),
            vulnerable: true,
        };
        let data = crate::registry::demo::generate(&[fleet], 3);
        let mut store = crate::orders::store::Store::in_memory().expect("store");
        store.import_registry(&data).expect("import");
        let all = store.registered_devices().expect("all");
        assert_eq!(all.len(), 1);
        assert_eq!(
            store.registered_device("yanqing-xiguan-0001").expect("one"),
            Some(all[0].clone())
        );
        assert_eq!(store.registered_device("nobody").expect("none"), None);
    }
}
