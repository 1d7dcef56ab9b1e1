//! The SMS/WeChat gateway adapter: `[notify.sms]` ([`SmsConfig`]). No vendor SDK: each notice
//! becomes a short Chinese text and the phone numbers of its recipients in the roles the
//! adapter serves, POSTed as JSON in the shape most Chinese SMS gateways (and WeChat-work
//! relays) accept, `{"phones": ["138..."], "text": "【督办】..."}` (both field names
//! configurable), through the webhook's delivery: the same signature headers, retries,
//! deadline, bounded queue and counters (sink `sms`). A vendor gateway that wants another shape
//! or its own signature sits behind a small relay on the same machine.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::webhook::{check_url, Delivery, DeliverySettings, DeliveryWorker};
use super::{
    default_notify_backoff, default_notify_deadline, default_notify_max_attempts,
    default_notify_max_backoff, default_notify_max_body_bytes, default_notify_queue,
    default_notify_timeout, Notice, NoticeKind, NoticeSink, NotifyError, RecipientRole,
};
use crate::metrics::Metrics;

/// Most phone numbers in one request; more recipients make more requests.
pub const MAX_PHONES_PER_REQUEST: usize = 50;
/// Bounds of `max_text_chars`.
const TEXT_CHARS: std::ops::RangeInclusive<usize> = 20..=500;

/// `[notify.sms]`: texts to the recipients' phones through an SMS or WeChat gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The gateway's send URL, POSTed `{"phones": [...], "text": "..."}` (`http://` only to this
    /// machine, else `https://`). Unset: no texts.
    #[serde(default)]
    pub url: Option<String>,
    /// Key of the HMAC-SHA256 signature (as the webhook's), or `env:VARIABLE`; required unless
    /// `url` is on this machine. Never logged.
    #[serde(default)]
    pub secret: String,
    /// Which recipients get texts: `township_officer`, `centre_duty`, `village_electrician`,
    /// `caretaker`. Empty: all four.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Longest text in characters; a longer one is cut and ends with `…`.
    #[serde(default = "default_sms_max_text_chars")]
    pub max_text_chars: usize,
    /// Name of the body's field with the phone numbers.
    #[serde(default = "default_sms_phones_field")]
    pub phones_field: String,
    /// Name of the body's field with the text.
    #[serde(default = "default_sms_text_field")]
    pub text_field: String,
    /// How long one attempt may take (connect, send, answer).
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long after it was queued a text may still be sent; then it is given up and counted
    /// as failed.
    #[serde(default = "default_notify_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// Most attempts of one text, the first included.
    #[serde(default = "default_notify_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failed attempt up to `max_backoff`.
    #[serde(default = "default_notify_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(default = "default_notify_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Most texts waiting to be sent; when full, the oldest is dropped and counted.
    #[serde(default = "default_notify_queue")]
    pub queue: usize,
    /// Largest request body; a larger one is dropped and counted.
    #[serde(default = "default_notify_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: String::new(),
            roles: Vec::new(),
            max_text_chars: default_sms_max_text_chars(),
            phones_field: default_sms_phones_field(),
            text_field: default_sms_text_field(),
            timeout: default_notify_timeout(),
            deadline: default_notify_deadline(),
            max_attempts: default_notify_max_attempts(),
            backoff: default_notify_backoff(),
            max_backoff: default_notify_max_backoff(),
            queue: default_notify_queue(),
            max_body_bytes: default_notify_max_body_bytes(),
        }
    }
}

fn default_sms_max_text_chars() -> usize {
    140
}
fn default_sms_phones_field() -> String {
    "phones".into()
}
fn default_sms_text_field() -> String {
    "text".into()
}

impl SmsConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let invalid = |key: &str, message: String| NotifyError::Invalid {
            field: format!("notify.sms.{key}"),
            message,
        };
        for role in &self.roles {
            if RecipientRole::parse(role).is_none() {
                return Err(invalid(
                    "roles",
                    format!("{role:?} is not township_officer, centre_duty, village_electrician or caretaker"),
                ));
            }
        }
        if !TEXT_CHARS.contains(&self.max_text_chars) {
            return Err(invalid(
                "max_text_chars",
                format!("must be {} to {}", TEXT_CHARS.start(), TEXT_CHARS.end()),
            ));
        }
        for (key, value) in [
            ("phones_field", &self.phones_field),
            ("text_field", &self.text_field),
        ] {
            if value.trim().is_empty() || value.len() > 64 {
                return Err(invalid(key, "must be 1 to 64 characters".into()));
            }
        }
        if self.phones_field == self.text_field {
            return Err(invalid(
                "text_field",
                "must differ from phones_field".into(),
            ));
        }
        super::check_delivery(
            "notify.sms",
            self.url.as_deref(),
            &self.secret,
            &super::Limits {
                timeout: self.timeout,
                deadline: self.deadline,
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                max_backoff: self.max_backoff,
                queue: self.queue,
                max_body_bytes: self.max_body_bytes,
            },
        )
    }
}

/// Notices as texts to the recipients' phones.
pub struct SmsSink {
    delivery: Delivery,
    roles: Vec<RecipientRole>,
    max_text_chars: usize,
    phones_field: String,
    text_field: String,
}

impl SmsSink {
    /// The sink and its delivery task; `None` when no URL is configured.
    pub fn new(
        config: &SmsConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Option<(SmsSink, DeliveryWorker)>, NotifyError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let settings = DeliverySettings {
            sink: "sms",
            url: check_url("notify.sms.url", url, &config.secret)?,
            secret: (!config.secret.is_empty()).then(|| config.secret.clone()),
            timeout: config.timeout,
            deadline: config.deadline,
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            max_backoff: config.max_backoff,
            queue: config.queue,
            max_body_bytes: config.max_body_bytes,
        };
        let (delivery, worker) = Delivery::new(settings, metrics)?;
        let roles = if config.roles.is_empty() {
            RecipientRole::ALL.to_vec()
        } else {
            config
                .roles
                .iter()
                .filter_map(|r| RecipientRole::parse(r))
                .collect()
        };
        Ok(Some((
            SmsSink {
                delivery,
                roles,
                max_text_chars: config.max_text_chars,
                phones_field: config.phones_field.clone(),
                text_field: config.text_field.clone(),
            },
            worker,
        )))
    }

    /// The request bodies of `notice`: one per [`MAX_PHONES_PER_REQUEST`] phones of the
    /// recipients in the sink's roles, none when it has no such recipient.
    pub fn bodies(&self, notice: &Notice) -> Vec<serde_json::Value> {
        let phones: Vec<&str> = notice
            .recipients
            .iter()
            .filter(|r| self.roles.contains(&r.role))
            .map(|r| r.phone.as_str())
            .collect();
        let text = text(notice, self.max_text_chars);
        phones
            .chunks(MAX_PHONES_PER_REQUEST)
            .map(|chunk| {
                let mut body = serde_json::Map::new();
                body.insert(self.phones_field.clone(), serde_json::json!(chunk));
                body.insert(self.text_field.clone(), serde_json::json!(text));
                serde_json::Value::Object(body)
            })
            .collect()
    }
}

impl NoticeSink for SmsSink {
    fn name(&self) -> &'static str {
        self.delivery.sink()
    }

    fn offer(&self, notice: &Notice) {
        for (index, body) in self.bodies(notice).into_iter().enumerate() {
            match serde_json::to_vec(&body) {
                Ok(bytes) => self.delivery.offer(format!("{}:{index}", notice.id), bytes),
                Err(error) => {
                    tracing::error!(notice = %notice.id, %error, "text could not be serialised")
                }
            }
        }
    }
}

/// The text of a notice: what happened, the order, where, and its note, at most `max_chars`
/// characters (cut with `…`).
pub fn text(notice: &Notice, max_chars: usize) -> String {
    let head = match notice.kind {
        NoticeKind::Escalated => "【督办】",
        NoticeKind::SlaWarning => "【时限预警】",
        NoticeKind::SupplyIncident => "【供电故障】",
        NoticeKind::VulnerableOrder => "【重点户报修】",
    };
    let place = match (&notice.village_name, &notice.address) {
        (_, Some(address)) => address.clone(),
        (Some(village), None) => village.clone(),
        (None, None) => notice.township.clone(),
    };
    let full = format!(
        "{head}工单{} {place} {}({})：{}",
        notice.order_id, notice.category, notice.priority, notice.note
    );
    if full.chars().count() <= max_chars {
        return full;
    }
    let mut cut: String = full.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Recipient;

    fn notice(kind: NoticeKind, note: &str) -> Notice {
        Notice {
            v: 1,
            id: format!("{}:7:0:0", kind.as_str()),
            kind,
            order_id: 7,
            township: "yanqing".into(),
            village_id: Some("yanqing-xiguan".into()),
            village_name: Some("西关村".into()),
            household_id: None,
            address: None,
            device_id: "village:yanqing/yanqing-xiguan".into(),
            category: "power_supply".into(),
            priority: "urgent".into(),
            state: "dispatched".into(),
            team_id: None,
            technician_id: None,
            note: note.into(),
            at_ms: 0,
            recipients: vec![
                Recipient {
                    role: RecipientRole::TownshipOfficer,
                    name: "王".into(),
                    phone: "13800000001".into(),
                },
                Recipient {
                    role: RecipientRole::VillageElectrician,
                    name: "孙".into(),
                    phone: "13800000002".into(),
                },
            ],
        }
    }

    #[test]
    fn a_text_names_the_order_and_place_and_is_cut_to_its_limit() {
        let short = text(&notice(NoticeKind::SupplyIncident, "3 台设备失联"), 140);
        assert_eq!(
            short,
            "【供电故障】工单7 西关村 power_supply(urgent)：3 台设备失联"
        );
        let long = text(&notice(NoticeKind::Escalated, &"长".repeat(500)), 40);
        assert_eq!(long.chars().count(), 40);
        assert!(
            long.starts_with("【督办】工单7") && long.ends_with('…'),
            "{long}"
        );
    }

    #[test]
    fn bodies_carry_the_phones_of_the_sinks_roles_in_the_configured_fields() {
        let config = SmsConfig {
            url: Some("http://127.0.0.1:9/sms".into()),
            roles: vec!["village_electrician".into()],
            phones_field: "mobiles".into(),
            text_field: "content".into(),
            ..SmsConfig::default()
        };
        config.validate().expect("valid");
        let (sink, _) = SmsSink::new(&config, Arc::new(Metrics::default()))
            .expect("builds")
            .expect("configured");
        let bodies = sink.bodies(&notice(NoticeKind::SupplyIncident, "x"));
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["mobiles"], serde_json::json!(["13800000002"]));
        assert!(bodies[0]["content"]
            .as_str()
            .is_some_and(|t| t.starts_with("【供电故障】")));
        let mut many = notice(NoticeKind::Escalated, "x");
        many.recipients = (0..120)
            .map(|n| Recipient {
                role: RecipientRole::VillageElectrician,
                name: format!("e{n}"),
                phone: format!("138{n:08}"),
            })
            .collect();
        let sizes: Vec<usize> = sink
            .bodies(&many)
            .iter()
            .map(|b| b["mobiles"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [50, 50, 20]);
    }
}
