//! Which edge box may publish what. On the mutual-TLS listeners rumqttd takes the tenant id
//! from the Organization of the box's client certificate and refuses every publish outside
//! `/tenants/{tenant}/`; the tenant id is the box's id encoded to ASCII letters and digits
//! ([`tenant_of_box`]). Ingest then checks, against the registry ([`Directory`]), that every
//! device and box status under a tenant's prefix belongs to that box's household, so a stolen
//! certificate can speak only for the one household it was issued to. The same directory tells
//! ingest which devices are registered at all, and in which township ([`Directory::township_of`]).

use std::collections::HashMap;

use wire::DeviceId;

/// Where a tenant's topics start.
pub const TENANT_ROOT: &str = "/tenants/";

/// `filter` under every tenant prefix: `/tenants/+/{filter}`.
pub fn any_tenant_filter(filter: &str) -> String {
    format!("{TENANT_ROOT}+/{filter}")
}

/// The tenant id of a topic published under a tenant prefix, if any.
pub fn tenant_of_topic(topic: &[u8]) -> Option<&str> {
    let topic = std::str::from_utf8(topic).ok()?;
    topic.strip_prefix(TENANT_ROOT)?.split('/').next()
}

/// The tenant id of an edge box: its id with `-` written `X`, `_` written `Y` and any other
/// character that is not a lowercase ASCII letter or digit written `Z` and two upper-case hex
/// digits per UTF-8 byte. rumqttd accepts only alphanumeric tenant ids; box ids are lowercase,
/// so the upper-case letters are free for the escapes and the encoding is reversible
/// (`box-0001` → `boxX0001`).
pub fn tenant_of_box(box_id: &str) -> String {
    let mut tenant = String::with_capacity(box_id.len());
    for c in box_id.chars() {
        match c {
            'a'..='z' | '0'..='9' => tenant.push(c),
            '-' => tenant.push('X'),
            '_' => tenant.push('Y'),
            other => {
                let mut bytes = [0u8; 4];
                for byte in other.encode_utf8(&mut bytes).bytes() {
                    tenant.push_str(&format!("Z{byte:02X}"));
                }
            }
        }
    }
    tenant
}

/// The box id a tenant id stands for; `None` if it is not an encoding [`tenant_of_box`] makes.
pub fn box_of_tenant(tenant: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(tenant.len());
    let mut chars = tenant.chars();
    while let Some(c) = chars.next() {
        match c {
            'a'..='z' | '0'..='9' => bytes.push(c as u8),
            'X' => bytes.push(b'-'),
            'Y' => bytes.push(b'_'),
            'Z' => {
                let high = chars.next()?;
                let low = chars.next()?;
                if !(high.is_ascii_hexdigit() && low.is_ascii_hexdigit())
                    || high.is_ascii_lowercase()
                    || low.is_ascii_lowercase()
                {
                    return None;
                }
                let hex = [high as u8, low as u8];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            _ => return None,
        }
    }
    let id = String::from_utf8(bytes).ok()?;
    (!id.is_empty()).then_some(id)
}

/// Why a message under a tenant prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0:?} is not the encoding of an edge box id")]
    NotABox(String),
    #[error("edge box {0:?} is not the box of any registered household (unknown, or re-keyed after its certificate was revoked)")]
    UnknownBox(String),
    #[error("edge box {edge_box:?} (household {household:?}) published the status of edge box {agent:?}")]
    ForeignBox {
        edge_box: String,
        household: String,
        agent: String,
    },
    #[error(
        "edge box {edge_box:?} (household {household:?}) published for device {device:?}, {owner}"
    )]
    ForeignDevice {
        edge_box: String,
        household: String,
        device: String,
        /// "registered to household ..." or "which is not registered".
        owner: String,
    },
}

/// What was published under a tenant prefix.
#[derive(Debug, Clone, Copy)]
pub enum Published<'a> {
    /// A reading of `device`.
    Reading { device: &'a str },
    /// The status of edge box `agent` with the devices it lists.
    Status {
        agent: &'a str,
        devices: &'a [DeviceId],
    },
}

/// The registry as the tenant check sees it: the household of every edge box and of every
/// device.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    households_by_box: HashMap<String, String>,
    households_by_device: HashMap<String, String>,
    /// Each registered device's township (through its household's village).
    townships_by_device: HashMap<String, String>,
}

impl Directory {
    /// Builds the directory from households with their edge box (`None`: the household's id)
    /// and devices with their household. A box id claimed by two households belongs to neither
    /// (the import refuses that; a hand-edited database could still hold it).
    pub fn new(
        households: impl IntoIterator<Item = (String, Option<String>)>,
        devices: impl IntoIterator<Item = (String, String)>,
    ) -> Directory {
        let mut households_by_box: HashMap<String, String> = HashMap::new();
        let mut ambiguous = Vec::new();
        for (household, edge_box) in households {
            let edge_box = edge_box.unwrap_or_else(|| household.clone());
            if let Some(previous) = households_by_box.insert(edge_box.clone(), household.clone()) {
                tracing::warn!(edge_box = %edge_box, first = %previous, second = %household, "an edge box is registered to two households; refusing both");
                ambiguous.push(edge_box);
            }
        }
        for edge_box in ambiguous {
            households_by_box.remove(&edge_box);
        }
        Directory {
            households_by_box,
            households_by_device: devices.into_iter().collect(),
            townships_by_device: HashMap::new(),
        }
    }

    /// Adds each device's township: `(device, township)`.
    pub fn with_townships(mut self, townships: impl IntoIterator<Item = (String, String)>) -> Self {
        self.townships_by_device = townships.into_iter().collect();
        self
    }

    /// The registered township of `device`; `None` when the device is not registered.
    pub fn township_of(&self, device: &str) -> Option<&str> {
        self.townships_by_device.get(device).map(String::as_str)
    }

    /// Registered devices the directory knows.
    pub fn devices(&self) -> usize {
        self.townships_by_device.len()
    }

    /// Boxes the directory knows.
    pub fn boxes(&self) -> usize {
        self.households_by_box.len()
    }

    /// Whether the box behind `tenant` may publish `published`.
    pub fn check(&self, tenant: &str, published: Published<'_>) -> Result<(), TenantError> {
        let edge_box = box_of_tenant(tenant).ok_or_else(|| TenantError::NotABox(tenant.into()))?;
        let household = self
            .households_by_box
            .get(&edge_box)
            .ok_or_else(|| TenantError::UnknownBox(edge_box.clone()))?;
        let own_device = |device: &str| -> Result<(), TenantError> {
            match self.households_by_device.get(device) {
                Some(owner) if owner == household => Ok(()),
                other => Err(TenantError::ForeignDevice {
                    edge_box: edge_box.clone(),
                    household: household.clone(),
                    device: device.to_owned(),
                    owner: match other {
                        Some(owner) => format!("registered to household {owner:?}"),
                        None => "which is not registered".to_owned(),
                    },
                }),
            }
        };
        match published {
            Published::Reading { device } => own_device(device),
            Published::Status { agent, devices } => {
                if agent != edge_box {
                    return Err(TenantError::ForeignBox {
                        edge_box: edge_box.clone(),
                        household: household.clone(),
                        agent: agent.to_owned(),
                    });
                }
                devices.iter().try_for_each(|d| own_device(d.as_str()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        Directory::new(
            [
                ("hh-a".to_owned(), Some("box-a".to_owned())),
                ("hh-b".to_owned(), None),
            ],
            [
                ("dev-a".to_owned(), "hh-a".to_owned()),
                ("dev-b".to_owned(), "hh-b".to_owned()),
            ],
        )
    }

    #[test]
    fn tenant_ids_are_alphanumeric_and_reversible() {
        for id in ["box-0001", "hh_yanqing-dongguan-0042", "a", "0-_-9"] {
            let tenant = tenant_of_box(id);
            assert!(
                tenant.chars().all(|c| c.is_ascii_alphanumeric()),
                "{tenant}"
            );
            assert_eq!(box_of_tenant(&tenant).as_deref(), Some(id));
        }
        assert_eq!(tenant_of_box("box-0001"), "boxX0001");
        assert_eq!(
            box_of_tenant(&tenant_of_box("Box 1")).as_deref(),
            Some("Box 1")
        );
        for bad in ["", "Q", "Z4", "Zzz", "Z0g", "ZFF"] {
            assert_eq!(box_of_tenant(bad), None, "{bad}");
        }
    }

    #[test]
    fn tenant_topics_name_their_tenant() {
        assert_eq!(
            tenant_of_topic(b"/tenants/boxXa/heating/v1/t/d/telemetry"),
            Some("boxXa")
        );
        assert_eq!(tenant_of_topic(b"heating/v1/t/d/telemetry"), None);
        assert_eq!(tenant_of_topic(b"/tenants/\xff/x"), None);
        assert_eq!(
            any_tenant_filter("heating/v1/+/+/status"),
            "/tenants/+/heating/v1/+/+/status"
        );
    }

    #[test]
    fn a_box_publishes_its_own_devices_and_status_only() {
        let d = directory();
        let a = tenant_of_box("box-a");
        assert_eq!(d.check(&a, Published::Reading { device: "dev-a" }), Ok(()));
        let own = [DeviceId::parse("dev-a").expect("id")];
        let status = |agent, devices| Published::Status { agent, devices };
        assert_eq!(d.check(&a, status("box-a", &own)), Ok(()));
        assert!(matches!(
            d.check(&a, Published::Reading { device: "dev-b" }),
            Err(TenantError::ForeignDevice { ref owner, .. }) if owner.contains("hh-b")
        ));
        assert!(matches!(
            d.check(&a, Published::Reading { device: "dev-new" }),
            Err(TenantError::ForeignDevice { .. })
        ));
        assert!(matches!(
            d.check(&a, status("hh-b", &[])),
            Err(TenantError::ForeignBox { .. })
        ));
        let foreign = [DeviceId::parse("dev-b").expect("id")];
        assert!(matches!(
            d.check(&a, status("box-a", &foreign)),
            Err(TenantError::ForeignDevice { .. })
        ));
        // The household without an edge_box column: its box id is its own id.
        assert_eq!(
            d.check(
                &tenant_of_box("hh-b"),
                Published::Reading { device: "dev-b" }
            ),
            Ok(())
        );
        assert_eq!(
            d.check(
                &tenant_of_box("box-gone"),
                Published::Reading { device: "dev-a" }
            ),
            Err(TenantError::UnknownBox("box-gone".into()))
        );
        assert_eq!(
            d.check("notQ", Published::Reading { device: "dev-a" }),
            Err(TenantError::NotABox("notQ".into()))
        );
    }

    #[test]
    fn a_box_claimed_by_two_households_belongs_to_neither() {
        let d = Directory::new(
            [
                ("h1".to_owned(), Some("h2".to_owned())),
                ("h2".to_owned(), None),
            ],
            [("d".to_owned(), "h2".to_owned())],
        );
        assert_eq!(d.boxes(), 0);
        assert!(d
            .check(&tenant_of_box("h2"), Published::Reading { device: "d" })
            .is_err());
    }
}
