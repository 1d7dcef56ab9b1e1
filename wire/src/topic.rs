//! The MQTT topic scheme: `heating/v1/{township}/{id}/{kind}`.
//!
//! The township is the second level after the version so that a broker topic filter such as
//! `heating/v1/yongning/#` gives one gateway instance exactly one township. `{id}` is a device
//! id for telemetry and commands, and an edge box id for box status. Under a tenant prefix
//! (`/tenants/{box}/heating/v1/...`, rumqttd client-certificate isolation) the same scheme
//! follows the prefix, so township filters stay possible.

use std::fmt;

use crate::ids::{IdError, TownshipId};

/// First two topic levels of every message in this system.
pub const TOPIC_ROOT: &str = "heating/v1";

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Device telemetry, QoS 1, published by the edge agent.
    Telemetry,
    /// Edge box status, retained: `online` on connect, `offline` as the MQTT last will.
    Status,
    /// Commands to a device, from the gateway.
    Command,
    /// Acknowledgements of commands, from the edge agent.
    CommandAck,
    /// New and changed work orders of a team (`{id}` is the team id), from the gateway, for
    /// technicians' clients.
    Orders,
    /// Alert transitions and escalations of a device (`{id}` is the device id), from the
    /// gateway, for operators' tools.
    Alerts,
    /// Supply incidents of a village (`{id}` is the village id) or of a whole township (`{id}`
    /// is the township id), from the gateway.
    Incidents,
    /// Notices to people (督办 escalations, SLA warnings, supply incidents, vulnerable
    /// households' orders; `{id}` is the notice kind, e.g. `escalated`), from the gateway, for
    /// the township's and the centre's tools.
    Notices,
}

impl TopicKind {
    fn suffix(self) -> &'static str {
        match self {
            TopicKind::Telemetry => "telemetry",
            TopicKind::Status => "status",
            TopicKind::Command => "cmd",
            TopicKind::CommandAck => "cmd/ack",
            TopicKind::Orders => "orders",
            TopicKind::Alerts => "alerts",
            TopicKind::Incidents => "incidents",
            TopicKind::Notices => "notices",
        }
    }
}

/// A parsed topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// Tenant prefix (`/tenants/{tenant}/`) when the broker isolates tenants, else `None`.
    pub tenant: Option<String>,
    pub township: TownshipId,
    /// Device id (telemetry, commands) or edge box id (status).
    pub id: String,
    pub kind: TopicKind,
}

/// Why a topic does not fit the scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic does not start with {TOPIC_ROOT}/")]
    WrongRoot,
    #[error("topic has {levels} levels; expected {TOPIC_ROOT}/{{township}}/{{id}}/{{kind}}")]
    WrongShape { levels: usize },
    #[error(
        "topic kind {0:?} is not one of telemetry, status, cmd, cmd/ack, orders, alerts, incidents, notices"
    )]
    UnknownKind(String),
    #[error("topic township: {0}")]
    Township(IdError),
    #[error("topic id: {0}")]
    Id(IdError),
}

impl Topic {
    pub fn new(township: TownshipId, id: impl Into<String>, kind: TopicKind) -> Self {
        Self {
            tenant: None,
            township,
            id: id.into(),
            kind,
        }
    }

    /// Parses a topic string, with or without a `/tenants/{tenant}/` prefix.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let (tenant, rest) = match topic.strip_prefix("/tenants/") {
            Some(after) => match after.split_once('/') {
                Some((tenant, rest)) => (Some(tenant.to_owned()), rest),
                None => return Err(TopicError::WrongRoot),
            },
            None => (None, topic),
        };
        let rest = rest
            .strip_prefix(TOPIC_ROOT)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::WrongRoot)?;
        let levels: Vec<&str> = rest.split('/').collect();
        let kind = match levels.as_slice() {
            [_, _, "telemetry"] => TopicKind::Telemetry,
            [_, _, "status"] => TopicKind::Status,
            [_, _, "cmd"] => TopicKind::Command,
            [_, _, "cmd", "ack"] => TopicKind::CommandAck,
            [_, _, "orders"] => TopicKind::Orders,
            [_, _, "alerts"] => TopicKind::Alerts,
            [_, _, "incidents"] => TopicKind::Incidents,
            [_, _, "notices"] => TopicKind::Notices,
            [_, _, other] => return Err(TopicError::UnknownKind((*other).to_owned())),
            [_, _, a, b] => return Err(TopicError::UnknownKind(format!("{a}/{b}"))),
            _ => {
                return Err(TopicError::WrongShape {
                    levels: levels.len() + 2,
                })
            }
        };
        let township = TownshipId::parse(levels[0]).map_err(TopicError::Township)?;
        crate::ids::DeviceId::parse(levels[1]).map_err(TopicError::Id)?;
        Ok(Self {
            tenant,
            township,
            id: levels[1].to_owned(),
            kind,
        })
    }

    /// Filter for everything of one kind in one township, e.g. `heating/v1/yongning/+/telemetry`.
    pub fn township_filter(township: &TownshipId, kind: TopicKind) -> String {
        format!("{TOPIC_ROOT}/{township}/+/{}", kind.suffix())
    }

    /// Filter for everything of one kind in every township.
    pub fn all_filter(kind: TopicKind) -> String {
        format!("{TOPIC_ROOT}/+/+/{}", kind.suffix())
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tenant) = &self.tenant {
            write!(f, "/tenants/{tenant}/")?;
        }
        write!(
            f,
            "{TOPIC_ROOT}/{}/{}/{}",
            self.township,
            self.id,
            self.kind.suffix()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn township(s: &str) -> TownshipId {
        TownshipId::parse(s).expect("valid township")
    }

    #[test]
    fn round_trips_every_kind() {
        for kind in [
            TopicKind::Telemetry,
            TopicKind::Status,
            TopicKind::Command,
            TopicKind::CommandAck,
            TopicKind::Orders,
            TopicKind::Alerts,
            TopicKind::Incidents,
            TopicKind::Notices,
        ] {
            let topic = Topic::new(township("yongning"), "yn-0001-hp", kind);
            assert_eq!(Topic::parse(&topic.to_string()), Ok(topic));
        }
    }

    #[test]
    fn keeps_the_tenant_prefix() {
        let parsed = Topic::parse("/tenants/box-7/heating/v1/sihai/sh-1/telemetry")
            .expect("tenant topic parses");
        assert_eq!(parsed.tenant.as_deref(), Some("box-7"));
        assert_eq!(parsed.township.as_str(), "sihai");
        assert_eq!(
            parsed.to_string(),
            "/tenants/box-7/heating/v1/sihai/sh-1/telemetry"
        );
    }

    #[test]
    fn rejects_topics_outside_the_scheme() {
        assert_eq!(
            Topic::parse("other/v1/a/b/telemetry"),
            Err(TopicError::WrongRoot)
        );
        assert!(matches!(
            Topic::parse("heating/v1/a/telemetry"),
            Err(TopicError::WrongShape { .. })
        ));
        assert!(matches!(
            Topic::parse("heating/v1/a/b/metrics"),
            Err(TopicError::UnknownKind(_))
        ));
        assert!(matches!(
            Topic::parse("heating/v1/A/b/telemetry"),
            Err(TopicError::Township(_))
        ));
    }

    #[test]
    fn filters_select_one_township() {
        assert_eq!(
            Topic::township_filter(&township("badaling"), TopicKind::Telemetry),
            "heating/v1/badaling/+/telemetry"
        );
        assert_eq!(
            Topic::all_filter(TopicKind::Status),
            "heating/v1/+/+/status"
        );
    }
}
