//! Outgoing HTTP delivery of notices: `[notify.webhook]` ([`WebhookConfig`]) and the machinery
//! the SMS adapter shares ([`Delivery`]): a bounded queue (the oldest notice is dropped and
//! counted when it is full) drained by one task that POSTs each body with an HMAC-SHA256
//! signature, retries with capped exponential backoff until the notice's delivery deadline, and
//! counts what was delivered, failed and dropped. Nothing here is awaited by order processing:
//! [`Delivery::offer`] takes a lock for a push and returns.
//!
//! Signing (for receivers): `x-heating-timestamp` is the Unix time in seconds of the attempt;
//! `x-heating-signature` is `sha256=` and the lowercase hex HMAC-SHA256, keyed by the secret, of
//! the timestamp, a `.`, and the raw body; `x-heating-delivery` names the notice and is the same
//! on every attempt, so a receiver that answered but whose answer was lost can drop the repeat.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::hmac;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    default_notify_backoff, default_notify_deadline, default_notify_max_attempts,
    default_notify_max_backoff, default_notify_max_body_bytes, default_notify_queue,
    default_notify_timeout, NotifyError,
};
use crate::events::{
    InternalEvent, NoticeDelivered, NoticeGivenUp, NoticeQueueFull, NoticeStopped, NoticeTooLarge,
};
use crate::metrics::Metrics;

/// The header with the signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-heating-signature";
/// The header with the attempt's Unix time in seconds (signed with the body).
pub const TIMESTAMP_HEADER: &str = "x-heating-timestamp";
/// The header naming the notice, the same on each attempt.
pub const DELIVERY_HEADER: &str = "x-heating-delivery";

/// How long queued notices may still be sent once the gateway is stopping.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// `[notify.webhook]`: every notice as JSON to one URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where notices are POSTed as JSON (`http://` only to this machine, else `https://`).
    /// Unset: no webhook.
    #[serde(default)]
    pub url: Option<String>,
    /// Key of the HMAC-SHA256 signature (at least 16 characters), or `env:VARIABLE`; required
    /// unless `url` is on this machine. Never logged.
    #[serde(default)]
    pub secret: String,
    /// How long one attempt may take (connect, send, answer).
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long after it was queued a notice may still be delivered; then it is given up and
    /// counted as failed.
    #[serde(default = "default_notify_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// Most attempts of one notice, the first included.
    #[serde(default = "default_notify_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failed attempt up to `max_backoff`.
    #[serde(default = "default_notify_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(default = "default_notify_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Most notices waiting to be sent; when full, the oldest is dropped and counted.
    #[serde(default = "default_notify_queue")]
    pub queue: usize,
    /// Largest request body; a larger notice is dropped and counted.
    #[serde(default = "default_notify_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: String::new(),
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

/// Limits on the delivery settings, shared by the webhook and the SMS adapter.
pub(super) const MAX_ATTEMPTS: u32 = 20;
pub(super) const MAX_QUEUE: usize = 100_000;
pub(super) const MAX_BODY_BYTES: usize = 1 << 20;

/// How one sink delivers: its URL, key and limits, checked.
#[derive(Clone)]
pub struct DeliverySettings {
    /// The sink's name in metrics and logs (`webhook`, `sms`).
    pub sink: &'static str,
    pub url: reqwest::Url,
    /// The signing key; `None`: unsigned (a receiver on this machine only).
    pub secret: Option<String>,
    pub timeout: Duration,
    pub deadline: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub queue: usize,
    pub max_body_bytes: usize,
}

impl DeliverySettings {
    /// The webhook's settings, `None` when no URL is configured.
    pub fn of_webhook(config: &WebhookConfig) -> Result<Option<DeliverySettings>, NotifyError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        Ok(Some(DeliverySettings {
            sink: "webhook",
            url: check_url("notify.webhook.url", url, &config.secret)?,
            secret: (!config.secret.is_empty()).then(|| config.secret.clone()),
            timeout: config.timeout,
            deadline: config.deadline,
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            max_backoff: config.max_backoff,
            queue: config.queue,
            max_body_bytes: config.max_body_bytes,
        }))
    }
}

/// Checks a sink's URL: `http` or `https` with a host; plain `http` and a missing secret only
/// for a receiver on this machine.
pub(super) fn check_url(
    field: &'static str,
    url: &str,
    secret: &str,
) -> Result<reqwest::Url, NotifyError> {
    let invalid = |message: String| NotifyError::Invalid {
        field: field.to_owned(),
        message,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("{url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "{url:?}: the scheme must be http or https"
        )));
    }
    let Some(host) = parsed.host_str() else {
        return Err(invalid(format!("{url:?} has no host")));
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && parsed.scheme() != "https" {
        return Err(invalid(format!(
            "{url:?} is not on this machine: use https (notices carry phone numbers)"
        )));
    }
    if !loopback && secret.is_empty() {
        return Err(invalid(format!(
            "{url:?} is not on this machine: set the secret beside it so the receiver can check the signature"
        )));
    }
    Ok(parsed)
}

/// `sha256=<hex>`: the HMAC-SHA256 of `{timestamp}.{body}` keyed by `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.as_ref() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One body waiting to be sent.
struct Item {
    /// `x-heating-delivery`.
    id: String,
    body: Vec<u8>,
    /// Give up after this.
    deadline: Instant,
}

/// The queue a [`Delivery`] and its [`DeliveryWorker`] share.
struct Shared {
    sink: &'static str,
    queue: Mutex<VecDeque<Item>>,
    wake: Notify,
    capacity: usize,
    max_body_bytes: usize,
    deadline: Duration,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn pop(&self) -> Option<Item> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

/// The producer's end of a sink's queue. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Delivery {
    shared: Arc<Shared>,
}

impl Delivery {
    /// A queue and the worker that drains it (run it with [`DeliveryWorker::run`]).
    pub fn new(
        settings: DeliverySettings,
        metrics: Arc<Metrics>,
    ) -> Result<(Delivery, DeliveryWorker), NotifyError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("heating-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        let shared = Arc::new(Shared {
            sink: settings.sink,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            capacity: settings.queue.max(1),
            max_body_bytes: settings.max_body_bytes,
            deadline: settings.deadline,
            metrics,
        });
        let key = settings
            .secret
            .as_ref()
            .map(|s| s.as_bytes().to_vec())
            .filter(|s| !s.is_empty());
        Ok((
            Delivery {
                shared: Arc::clone(&shared),
            },
            DeliveryWorker {
                shared,
                client,
                key,
                settings,
            },
        ))
    }

    /// The sink's name (`webhook`, `sms`).
    pub fn sink(&self) -> &'static str {
        self.shared.sink
    }

    /// Queues `body` for delivery as `id`. A body over the size limit is dropped; a full queue
    /// drops its oldest notice. Both are counted and logged.
    pub fn offer(&self, id: String, body: Vec<u8>) {
        let shared = &self.shared;
        if body.len() > shared.max_body_bytes {
            NoticeTooLarge {
                sink: shared.sink,
                delivery: &id,
                bytes: body.len(),
                limit: shared.max_body_bytes,
            }
            .emit(&shared.metrics);
            return;
        }
        let item = Item {
            id,
            body,
            deadline: Instant::now() + shared.deadline,
        };
        let dropped = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            let dropped = if queue.len() >= shared.capacity {
                queue.pop_front()
            } else {
                None
            };
            queue.push_back(item);
            dropped
        };
        if let Some(dropped) = dropped {
            NoticeQueueFull {
                sink: shared.sink,
                delivery: &dropped.id,
                capacity: shared.capacity,
            }
            .emit(&shared.metrics);
        }
        shared.wake.notify_one();
    }
}

/// How a delivery ended.
enum Outcome {
    Delivered { attempts: u32 },
    Failed { attempts: u32, reason: String },
}

/// Why an attempt failed: worth a retry or not.
enum AttemptError {
    Retry(String),
    Permanent(String),
}

/// The task that sends a sink's queued notices, one at a time, in order.
pub struct DeliveryWorker {
    shared: Arc<Shared>,
    client: reqwest::Client,
    key: Option<Vec<u8>>,
    settings: DeliverySettings,
}

impl DeliveryWorker {
    /// Sends queued notices until `shutdown`; then sends what is queued for a short grace
    /// and counts the rest as dropped.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sink = self.shared.sink;
        tracing::info!(sink, url = %redacted(&self.settings.url), signed = self.key.is_some(), "notice delivery started");
        let mut until = None;
        loop {
            let Some(item) = self.shared.pop() else {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.shared.wake.notified() => continue,
                }
            };
            let grace = async {
                shutdown.cancelled().await;
                tokio::time::sleep(DRAIN_GRACE).await;
            };
            tokio::select! {
                outcome = self.deliver(&item, item.deadline) => self.record(&item, outcome),
                () = grace => {
                    NoticeStopped { sink, delivery: &item.id }.emit(&self.shared.metrics);
                    // The grace is spent: what is still queued is dropped below.
                    until = Some(Instant::now());
                    break;
                }
            }
        }
        let until = until.unwrap_or_else(|| Instant::now() + DRAIN_GRACE);
        while let Some(item) = self.shared.pop() {
            if Instant::now() >= until {
                NoticeStopped {
                    sink,
                    delivery: &item.id,
                }
                .emit(&self.shared.metrics);
                continue;
            }
            let outcome = self.deliver(&item, item.deadline.min(until)).await;
            self.record(&item, outcome);
        }
        Ok(())
    }

    fn record(&self, item: &Item, outcome: Outcome) {
        let sink = self.shared.sink;
        match outcome {
            Outcome::Delivered { attempts } => NoticeDelivered {
                sink,
                delivery: &item.id,
                attempts,
            }
            .emit(&self.shared.metrics),
            Outcome::Failed { attempts, reason } => NoticeGivenUp {
                sink,
                delivery: &item.id,
                attempts,
                error: &reason,
            }
            .emit(&self.shared.metrics),
        }
    }

    /// Attempts `item` until it is delivered, refused for good, out of attempts or past
    /// `stop_at`.
    async fn deliver(&self, item: &Item, stop_at: Instant) -> Outcome {
        let settings = &self.settings;
        let mut delay = settings.backoff;
        let mut attempts = 0;
        let mut reason = String::from("past its delivery deadline before the first attempt");
        while attempts < settings.max_attempts.max(1) {
            let now = Instant::now();
            if now >= stop_at {
                break;
            }
            attempts += 1;
            match self
                .attempt(item, settings.timeout.min(stop_at - now))
                .await
            {
                Ok(()) => return Outcome::Delivered { attempts },
                Err(AttemptError::Permanent(error)) => {
                    return Outcome::Failed {
                        attempts,
                        reason: error,
                    }
                }
                Err(AttemptError::Retry(error)) => reason = error,
            }
            if attempts >= settings.max_attempts {
                break;
            }
            if Instant::now() + delay >= stop_at {
                reason = format!("{reason}; the next attempt would be past the delivery deadline");
                break;
            }
            self.shared
                .metrics
                .notice_outcome(self.shared.sink, "retried");
            tracing::info!(sink = self.shared.sink, delivery = %item.id, attempt = attempts, error = %reason, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "notice delivery failed; retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(settings.max_backoff);
        }
        Outcome::Failed { attempts, reason }
    }

    /// One POST of `item`, signed at this attempt's time.
    async fn attempt(&self, item: &Item, timeout: Duration) -> Result<(), AttemptError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = self
            .client
            .post(self.settings.url.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, &item.id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .body(item.body.clone());
        if let Some(key) = &self.key {
            request = request.header(SIGNATURE_HEADER, signature(key, timestamp, &item.body));
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else if status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                {
                    Err(AttemptError::Retry(format!(
                        "the receiver answered {status}"
                    )))
                } else {
                    Err(AttemptError::Permanent(format!(
                        "the receiver refused it with {status}"
                    )))
                }
            }
            Err(error) => Err(AttemptError::Retry(error.without_url().to_string())),
        }
    }
}

/// The URL without user, password and query (they may hold credentials), for logs.
fn redacted(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body_in_hex() {
        let a = signature(b"secret-0123456789", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert!(a[7..].bytes().all(|b| HEX.contains(&b)));
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"secret-0123456789"),
            b"1.{}",
        );
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(a, format!("sha256={hex}"));
        assert_ne!(a, signature(b"secret-0123456789", 2, b"{}"));
        assert_ne!(a, signature(b"secret-0123456789", 1, b"{ }"));
        assert_ne!(a, signature(b"another-secret-01", 1, b"{}"));
    }

    #[test]
    fn urls_off_this_machine_need_https_and_a_secret() {
        assert!(check_url("f", "http://127.0.0.1:9000/hook", "").is_ok());
        assert!(check_url("f", "http://localhost/hook", "").is_ok());
        assert!(check_url("f", "http://[::1]:80/", "").is_ok());
        let err = check_url("f", "http://sms.example.net/send", "k").expect_err("plain http");
        assert!(err.to_string().contains("https"), "{err}");
        let err = check_url("f", "https://sms.example.net/send", "").expect_err("no secret");
        assert!(err.to_string().contains("secret"), "{err}");
        assert!(check_url("f", "https://sms.example.net/send", "k").is_ok());
        assert!(check_url("f", "ftp://127.0.0.1/", "").is_err());
        assert!(check_url("f", "not a url", "").is_err());
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_an_oversized_body_is_dropped_both_counted() {
        let metrics = Arc::new(Metrics::default());
        let settings = DeliverySettings {
            sink: "webhook",
            url: reqwest::Url::parse("http://127.0.0.1:9/").expect("url"),
            secret: None,
            timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            max_attempts: 1,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            queue: 2,
            max_body_bytes: 1024,
        };
        let (delivery, worker) = Delivery::new(settings, Arc::clone(&metrics)).expect("client");
        for id in ["a", "b", "c"] {
            delivery.offer(id.into(), b"{}".to_vec());
        }
        delivery.offer("big".into(), vec![b' '; 1025]);
        assert_eq!(metrics.notices_total("webhook", "dropped"), 2);
        let left: Vec<String> = std::iter::from_fn(|| worker.shared.pop().map(|i| i.id)).collect();
        assert_eq!(left, ["b", "c"], "the oldest went");
    }

    #[test]
    fn logs_show_the_url_without_credentials_or_query() {
        let url =
            reqwest::Url::parse("https://user:pw@sms.example.net:8443/send?key=abc").expect("url");
        assert_eq!(redacted(&url), "https://sms.example.net:8443/send");
    }
}
