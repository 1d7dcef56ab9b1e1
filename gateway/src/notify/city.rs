//! The 12345 round trip (`[notify.city]`): every request that came from the city's hotline
//! (intake channel `hotline_12345`) with its ticket number (12345 工单号) is answered back
//! through one outgoing adapter: the intake (`received`, with the order it opened or joined), each step of that order
//! (`dispatched`, `accepted`, `arrived`, `resolved` with the technician's note, `callback`,
//! `reopened`, `closed`, `cancelled`, `merged`, `escalated`) and the desk's answer to a
//! question that needed no order (`answered`: policy, charge ...).
//!
//! The replies are read from the store, not from the order service's broadcast, after a cursor
//! kept in the store (`kv`, key [`CURSOR_KEY`]): the cursor moves only once the receiver has
//! taken a reply (2xx) or refused it for good (a 4xx other than 408 and 429, counted as
//! failed), so a gateway that stops or loses its link sends the rest later, in order, and none
//! is skipped. Delivery is at least once; the header `x-heating-delivery`
//! (`12345:{ticket}:{event}:{id}`) is the same on every attempt, for the receiver to drop a
//! repeat. Signed like the webhook (`x-heating-signature`, see [`super::webhook`]).
//!
//! The body (JSON, `v: 1`) is shaped for the city's work-order assistant (工单处理助手): the
//! ticket, what happened and when, the order and its state, the text to show the caller
//! (resolution note or answer) and the order's stage times; an adapter in front of the city's
//! own interface maps it field by field.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::webhook::{self, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::{
    default_notify_backoff, default_notify_max_backoff, default_notify_max_body_bytes,
    default_notify_timeout, NotifyError,
};
use crate::events::{CityReplyAttempt, CityReplyOutcome, InternalEvent, StoreFailed};
use crate::metrics::Metrics;
use crate::orders::store::{CityCursor, CityItem, OrderRow};
use crate::orders::{Channel, OrderService};

/// The `kv` key of the sender's cursor.
pub const CURSOR_KEY: &str = "notify.city.cursor";

/// Most replies read from the store at once.
const BATCH: usize = 200;

/// `[notify.city]`: the city's 12345 platform adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    /// Where replies are POSTed as JSON (`http://` only to this machine, else `https://`).
    /// Unset: no replies go back (the export still lists every ticket).
    #[serde(default)]
    pub url: Option<String>,
    /// Key of the HMAC-SHA256 signature (at least 16 characters), or `env:VARIABLE`; required
    /// unless `url` is on this machine. Never logged.
    #[serde(default)]
    pub secret: String,
    /// How often the store is read for new replies.
    #[serde(default = "default_city_poll_every", with = "humantime_serde")]
    pub poll_every: Duration,
    /// How long one attempt may take (connect, send, answer).
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Wait before the first retry of a reply; doubled after each failed attempt up to
    /// `max_backoff`. A reply is retried until the receiver takes or refuses it: later
    /// replies wait behind it, so the city sees each ticket's steps in order.
    #[serde(default = "default_notify_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(default = "default_notify_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Largest request body; the text of a larger reply is cut to fit.
    #[serde(default = "default_notify_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for CityConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: String::new(),
            poll_every: default_city_poll_every(),
            timeout: default_notify_timeout(),
            backoff: default_notify_backoff(),
            max_backoff: default_notify_max_backoff(),
            max_body_bytes: default_notify_max_body_bytes(),
        }
    }
}

/// The intake channel whose tickets are the city's.
pub const CITY_CHANNEL: Channel = Channel::Hotline12345;
fn default_city_poll_every() -> Duration {
    Duration::from_secs(5)
}

impl CityConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let invalid = |key: &str, message: &str| NotifyError::Invalid {
            field: format!("notify.city.{key}"),
            message: message.to_owned(),
        };
        if self.poll_every < Duration::from_millis(100)
            || self.poll_every > Duration::from_secs(3600)
        {
            return Err(invalid("poll_every", "must be between 100ms and 1h"));
        }
        super::check_delivery(
            "notify.city",
            None,
            &self.secret,
            &super::Limits {
                timeout: self.timeout,
                deadline: self.timeout,
                max_attempts: 1,
                backoff: self.backoff,
                max_backoff: self.max_backoff,
                queue: 1,
                max_body_bytes: self.max_body_bytes,
            },
        )?;
        if let Some(url) = &self.url {
            webhook::check_url("notify.city.url", url, &self.secret)?;
        }
        Ok(())
    }
}

/// The stage times of a reply's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CityTimes {
    pub created_at_ms: i64,
    pub dispatched_at_ms: Option<i64>,
    pub on_site_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

/// One reply to the city, as POSTed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CityReply {
    pub v: u32,
    /// `x-heating-delivery`: `12345:{ticket}:{event}:{id}`.
    pub id: String,
    pub ticket: String,
    /// `received`, `answered` or the order step.
    pub event: String,
    pub at_ms: i64,
    pub township: String,
    /// The request's kind (`repair`, `policy`, `charge`, ...).
    pub request_kind: String,
    pub order_id: Option<i64>,
    /// The order's state now.
    pub order_state: Option<String>,
    /// The text for the caller: the resolution note, the answer, the request as taken.
    pub text: String,
    pub times: Option<CityTimes>,
    /// The resident's satisfaction at the callback (1-5).
    pub satisfaction: Option<i64>,
}

impl CityReply {
    fn of(item: &CityItem, order: Option<&OrderRow>) -> CityReply {
        let key = item.event_id.unwrap_or(item.request_id);
        CityReply {
            v: 1,
            id: format!("12345:{}:{}:{key}", item.ticket, item.event),
            ticket: item.ticket.clone(),
            event: item.event.clone(),
            at_ms: item.at_ms,
            township: item.township.clone(),
            request_kind: item.request_kind.clone(),
            order_id: item.order_id,
            order_state: order.map(|o| o.state.as_str().to_owned()),
            text: item.text.clone(),
            times: order.map(|o| CityTimes {
                created_at_ms: o.created_at_ms,
                dispatched_at_ms: o.dispatched_at_ms,
                on_site_at_ms: o.on_site_at_ms,
                resolved_at_ms: o.resolved_at_ms,
                closed_at_ms: o.closed_at_ms,
            }),
            satisfaction: order.and_then(|o| o.satisfaction),
        }
    }

    /// The JSON body, its text cut (at a character boundary) so the body fits `max_bytes`.
    fn body(&mut self, max_bytes: usize) -> Vec<u8> {
        loop {
            let body = serde_json::to_vec(self).unwrap_or_default();
            if body.len() <= max_bytes || self.text.is_empty() {
                return body;
            }
            let over = body.len() - max_bytes;
            let mut end = self.text.len().saturating_sub(over + 3);
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
            self.text.truncate(end);
            self.text.push('…');
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Taken,
    Refused(String),
    Retry(String),
}

/// The sender: reads replies after its cursor and POSTs them one at a time, in order.
pub struct CitySender {
    config: CityConfig,
    url: reqwest::Url,
    client: reqwest::Client,
    orders: OrderService,
    metrics: Arc<Metrics>,
}

impl CitySender {
    /// The sender of `config`, `None` when no URL is set.
    pub fn new(
        config: &CityConfig,
        orders: &OrderService,
        metrics: Arc<Metrics>,
    ) -> Result<Option<CitySender>, NotifyError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let url = webhook::check_url("notify.city.url", url, &config.secret)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .user_agent(concat!("heating-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Some(CitySender {
            config: config.clone(),
            url,
            client,
            orders: orders.clone(),
            metrics,
        }))
    }

    /// Sends replies until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(url = %webhook_redacted(&self.url), channel = CITY_CHANNEL.as_str(), signed = !self.config.secret.is_empty(), "12345 replies started");
        let mut cursor = self.load_cursor().await;
        loop {
            let channel = CITY_CHANNEL.as_str();
            let from = cursor;
            let items = match self
                .orders
                .with_store(move |s| s.city_items(channel, &from, BATCH))
                .await
            {
                Ok(items) => items,
                Err(error) => {
                    StoreFailed {
                        what: "12345 replies could not be read",
                        error: &error,
                    }
                    .emit(&self.metrics);
                    Vec::new()
                }
            };
            for item in &items {
                if !self.deliver(item, &shutdown).await {
                    return Ok(());
                }
                advance(&mut cursor, item);
                let saved = serde_json::to_string(&cursor).unwrap_or_default();
                if let Err(error) = self
                    .orders
                    .with_store(move |s| s.put(CURSOR_KEY, &saved))
                    .await
                {
                    StoreFailed {
                        what: "the 12345 cursor could not be saved; a reply may be sent again after a restart",
                        error: &error,
                    }
                    .emit(&self.metrics);
                }
            }
            if items.len() < BATCH {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(self.config.poll_every) => {}
                }
            }
        }
    }

    async fn load_cursor(&self) -> CityCursor {
        match self.orders.with_store(|s| s.get(CURSOR_KEY)).await {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|error| {
                tracing::error!(%error, "the stored 12345 cursor is unreadable; starting from the first ticket");
                CityCursor::default()
            }),
            Ok(None) => CityCursor::default(),
            Err(error) => {
                StoreFailed {
                    what: "the 12345 cursor could not be read; starting from the first ticket",
                    error: &error,
                }
                .emit(&self.metrics);
                CityCursor::default()
            }
        }
    }

    /// Sends one reply until the receiver takes or refuses it; `false` when stopped first.
    async fn deliver(&self, item: &CityItem, shutdown: &CancellationToken) -> bool {
        let order = match item.order_id {
            Some(id) => self
                .orders
                .with_store(move |s| s.order_row(id))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let mut reply = CityReply::of(item, order.as_ref());
        let body = reply.body(self.config.max_body_bytes);
        let mut wait = self.config.backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let attempt = self.attempt(&reply.id, &body).await;
            let outcome = match &attempt {
                Attempt::Taken => CityReplyOutcome::Delivered,
                Attempt::Refused(reason) => CityReplyOutcome::Refused { reason },
                Attempt::Retry(reason) => CityReplyOutcome::Retried {
                    reason,
                    retry_in: wait,
                },
            };
            CityReplyAttempt {
                ticket: &reply.ticket,
                event: &reply.event,
                attempts,
                outcome,
            }
            .emit(&self.metrics);
            match attempt {
                Attempt::Taken | Attempt::Refused(_) => return true,
                Attempt::Retry(_) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Attempt {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut request = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header(DELIVERY_HEADER, id)
            .header(TIMESTAMP_HEADER, now_s.to_string());
        if !self.config.secret.is_empty() {
            request = request.header(
                SIGNATURE_HEADER,
                webhook::signature(self.config.secret.as_bytes(), now_s, body),
            );
        }
        match request.body(body.to_vec()).send().await {
            Ok(response) if response.status().is_success() => Attempt::Taken,
            Ok(response) => {
                let status = response.status();
                if status.is_client_error()
                    && status != reqwest::StatusCode::REQUEST_TIMEOUT
                    && status != reqwest::StatusCode::TOO_MANY_REQUESTS
                {
                    Attempt::Refused(format!("HTTP {status}"))
                } else {
                    Attempt::Retry(format!("HTTP {status}"))
                }
            }
            Err(error) => Attempt::Retry(error.without_url().to_string()),
        }
    }
}

/// The cursor past `item`.
fn advance(cursor: &mut CityCursor, item: &CityItem) {
    match (item.event.as_str(), item.event_id) {
        (_, Some(event_id)) => {
            cursor.event_id = event_id;
            cursor.event_request_id = item.request_id;
        }
        ("received", None) => cursor.received_id = item.request_id,
        (_, None) => {
            cursor.answered_at_ms = item.at_ms;
            cursor.answered_id = item.request_id;
        }
    }
}

/// The URL without its query (which may carry a key).
fn webhook_redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(event: &str, event_id: Option<i64>, text: &str) -> CityItem {
        CityItem {
            event: event.into(),
            at_ms: 1_000,
            request_id: 7,
            ticket: "2026120700123".into(),
            township: "yanqing".into(),
            request_kind: "repair".into(),
            order_id: Some(3),
            event_id,
            text: text.into(),
        }
    }

    #[test]
    fn the_cursor_moves_per_stream() {
        let mut cursor = CityCursor::default();
        advance(&mut cursor, &item("received", None, ""));
        advance(&mut cursor, &item("resolved", Some(41), ""));
        advance(&mut cursor, &item("answered", None, ""));
        assert_eq!(
            cursor,
            CityCursor {
                received_id: 7,
                event_id: 41,
                event_request_id: 7,
                answered_at_ms: 1_000,
                answered_id: 7,
            }
        );
    }

    #[test]
    fn a_reply_is_cut_to_fit_and_names_its_delivery() {
        let mut reply = CityReply::of(&item("resolved", Some(41), &"修".repeat(2000)), None);
        assert_eq!(reply.id, "12345:2026120700123:resolved:41");
        let body = reply.body(1024);
        assert!(body.len() <= 1024, "{}", body.len());
        let back: CityReply = serde_json::from_slice(&body).expect("json");
        assert!(back.text.ends_with('…'));
        assert_eq!(back.ticket, "2026120700123");
    }

    #[test]
    fn the_config_names_its_bad_field() {
        let config = CityConfig {
            poll_every: Duration::from_millis(10),
            ..CityConfig::default()
        };
        let error = config.validate().expect_err("too eager");
        assert_eq!(error.field(), Some("notify.city.poll_every"));
        let config = CityConfig {
            url: Some("http://city.example/12345".into()),
            ..CityConfig::default()
        };
        let error = config.validate().expect_err("plain http off this machine");
        assert_eq!(error.field(), Some("notify.city.url"));
        assert!(CityConfig::default().validate().is_ok());
    }
}
