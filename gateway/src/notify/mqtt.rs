//! The MQTT sink of notices (`[notify] mqtt`, on by default): every notice (督办 escalation,
//! SLA warning, supply incident, vulnerable household's order) published on
//! `heating/v1/{township}/{kind}/notices` through the gateway's broker link (the embedded
//! broker's in-process link or the external broker's client), for the township's and the
//! centre's own tools: a township subscribes `heating/v1/{township}/+/notices`, the centre
//! `heating/v1/+/escalated/notices` and the like.
//!
//! The message is the notice without what identifies people: no phone numbers, names or house
//! address (anyone the broker lets subscribe may read it; the webhook and the SMS adapter carry
//! those to their receivers), only the roles it is for. QoS 1, not retained; at most once per
//! notice per gateway process like the other sinks (a subscriber that was away reads the
//! orders' history).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Notice, NoticeKind, NoticeSink, RecipientRole};
use crate::events::{InternalEvent, MqttNoticeUnroutable};
use crate::metrics::Metrics;
use crate::orders::TeamNotifier;

/// A notice as published on MQTT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MqttNotice {
    pub v: u32,
    /// The notice's id (as `x-heating-delivery` on the webhook).
    pub id: String,
    pub kind: NoticeKind,
    pub order_id: i64,
    pub township: String,
    pub village_id: Option<String>,
    pub device_id: String,
    pub category: String,
    pub priority: String,
    pub state: String,
    pub team_id: Option<String>,
    pub note: String,
    pub at_ms: i64,
    /// The roles the notice is for (each once).
    pub for_roles: Vec<RecipientRole>,
}

impl MqttNotice {
    pub fn of(notice: &Notice) -> MqttNotice {
        let mut for_roles: Vec<RecipientRole> = Vec::new();
        for recipient in &notice.recipients {
            if !for_roles.contains(&recipient.role) {
                for_roles.push(recipient.role);
            }
        }
        MqttNotice {
            v: 1,
            id: notice.id.clone(),
            kind: notice.kind,
            order_id: notice.order_id,
            township: notice.township.clone(),
            village_id: notice.village_id.clone(),
            device_id: notice.device_id.clone(),
            category: notice.category.clone(),
            priority: notice.priority.clone(),
            state: notice.state.clone(),
            team_id: notice.team_id.clone(),
            note: notice.note.clone(),
            at_ms: notice.at_ms,
            for_roles,
        }
    }
}

/// The topic of a notice: `heating/v1/{township}/{kind}/notices`; `None` when the township is
/// not a topic level.
pub fn topic(notice: &Notice) -> Option<String> {
    let township = wire::TownshipId::parse(&notice.township).ok()?;
    Some(wire::Topic::new(township, notice.kind.as_str(), wire::TopicKind::Notices).to_string())
}

/// The sink: publishes through the gateway's broker link.
pub struct MqttSink {
    publisher: Arc<dyn TeamNotifier>,
    metrics: Arc<Metrics>,
}

impl MqttSink {
    pub fn new(publisher: Arc<dyn TeamNotifier>, metrics: Arc<Metrics>) -> MqttSink {
        MqttSink { publisher, metrics }
    }
}

impl NoticeSink for MqttSink {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn offer(&self, notice: &Notice) {
        let (Some(topic), Ok(payload)) =
            (topic(notice), serde_json::to_vec(&MqttNotice::of(notice)))
        else {
            MqttNoticeUnroutable {
                order: notice.order_id,
                township: &notice.township,
            }
            .emit(&self.metrics);
            return;
        };
        self.publisher.notice(topic, payload);
        self.metrics.notice_outcome("mqtt", "delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Recipient;

    #[test]
    fn the_mqtt_notice_names_roles_not_people() {
        let notice = Notice {
            v: 1,
            id: "escalated:7:1000:ab".into(),
            kind: NoticeKind::Escalated,
            order_id: 7,
            township: "yanqing".into(),
            village_id: Some("yanqing-xiguan".into()),
            village_name: Some("西关村".into()),
            household_id: Some("h1".into()),
            address: Some("西关村 3 组 12 号".into()),
            device_id: "yanqing-xiguan-0001".into(),
            category: "repair".into(),
            priority: "urgent".into(),
            state: "dispatched".into(),
            team_id: Some("aurora-yanqing".into()),
            technician_id: None,
            note: "on site overdue".into(),
            at_ms: 1_000,
            recipients: vec![
                Recipient {
                    role: RecipientRole::TownshipOfficer,
                    name: "张".into(),
                    phone: "13800000001".into(),
                },
                Recipient {
                    role: RecipientRole::TownshipOfficer,
                    name: "李".into(),
                    phone: "13800000002".into(),
                },
                Recipient {
                    role: RecipientRole::CentreDuty,
                    name: "值班".into(),
                    phone: "01069100000".into(),
                },
            ],
        };
        assert_eq!(
            topic(&notice).as_deref(),
            Some("heating/v1/yanqing/escalated/notices")
        );
        let text = serde_json::to_string(&MqttNotice::of(&notice)).expect("json");
        for private in ["13800000001", "12 号", "张"] {
            assert!(!text.contains(private), "{private} in {text}");
        }
        let back: MqttNotice = serde_json::from_str(&text).expect("reads back");
        assert_eq!(
            back.for_roles,
            [RecipientRole::TownshipOfficer, RecipientRole::CentreDuty]
        );
        assert_eq!(back.order_id, 7);
    }
}
