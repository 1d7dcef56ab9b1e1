//! The gateway's log subscriber: `RUST_LOG`-style filtering, text or JSON lines on stderr, and
//! rumqttd's per-message spans turned off.
//!
//! rumqttd opens an `ERROR`-level span for every batch a connection sends (`[>] incoming`,
//! `incoming_payload`) and for every publish in it (`publish`, with the topic in `Debug` form).
//! Because they are at `ERROR`, any filter that keeps rumqttd's warnings keeps them, and the
//! text formatter then renders the topic into a string for each message on the broker's single
//! router thread. perf on `simulator bench ingest` put that at about a fifth of the router
//! thread's samples. rumqttd's own events (its warnings and errors) are kept; they lose only
//! the per-message span prefix. The connection spans (`remote_link`, `incoming_connect`,
//! `incoming_disconnect`) stay, so an error still names its client.
//!
//! Three rumqttd `ERROR` events that are no fault are dropped. First, the two of a clean
//! disconnect: a client that sends DISCONNECT and then closes its socket reaches rumqttd's
//! router as two disconnections of one connection (rumqttd's own comment in
//! `handle_disconnection` says so): the second logs
//! `no-connection id N is already gone`; and when the router has closed the link first, the
//! link logs `router-drop` (rumqttd's name for "the router ended this connection", which is
//! also how a session takeover ends the old one). Stopping the demo's 300 boxes logged about
//! 300 such lines, none of them a fault. A router that really dies is not hidden by this: the
//! gateway's own link to it fails, and ingest reports that and stops.
//! Third, a peer that opens a TCP connection and closes it before sending CONNECT (the
//! gateway's own start-up check that the listener is up, a load balancer's TCP health check)
//! is not an `ERROR`: rumqttd's `Error while handling MQTT connect packet` is dropped when its
//! error is the peer closing (`ConnectionAborted`); every other connect error stays.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,rumqttd=warn";

/// rumqttd's spans opened once per message or per batch of messages.
const RUMQTTD_PER_MESSAGE_SPANS: [&str; 3] = ["[>] incoming", "incoming_payload", "publish"];

/// Whether `metadata` is one of rumqttd's per-message spans.
fn rumqttd_per_message_span(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && metadata.target().starts_with("rumqttd")
        && RUMQTTD_PER_MESSAGE_SPANS.contains(&metadata.name())
}

/// Drops rumqttd's reports of a clean disconnect (see the module's text).
struct DisconnectNoise;

impl<S: tracing::Subscriber> Layer<S> for DisconnectNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let target = event.metadata().target();
        let router = target.starts_with("rumqttd::router");
        if !router && !target.starts_with("rumqttd::server") {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(text) = fields.message else {
            return true;
        };
        let noise = if router {
            text.starts_with("no-connection id ") && text.ends_with(" is already gone")
        } else {
            text == "router-drop"
                || (text == "Error while handling MQTT connect packet"
                    && fields
                        .error
                        .is_some_and(|error| error.contains("kind: ConnectionAborted")))
        };
        !noise
    }
}

/// An event's message and `error` field, as text.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    error: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "error" => self.error = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

/// The subscriber: `filter` (`RUST_LOG` syntax), rumqttd's per-message spans off, its
/// clean-disconnect reports dropped, text or JSON lines written to `writer`.
pub fn subscriber<W>(
    filter: EnvFilter,
    json: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::layer().with_writer(writer);
    let format = if json {
        format.json().boxed()
    } else {
        format.boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(FilterFn::new(|metadata| {
            !rumqttd_per_message_span(metadata)
        }))
        .with(DisconnectNoise)
        .with(format)
}

/// The filter from `RUST_LOG`, or [`DEFAULT_FILTER`] when it is unset or unreadable.
pub fn filter_from_env() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// A binary's start: the log subscriber on stderr (text, or JSON lines with `json`; the
/// filter from `RUST_LOG`) installed globally, and a multi-threaded runtime. The error says
/// which of the two failed.
pub fn start_process(json: bool) -> Result<tokio::runtime::Runtime, String> {
    let subscriber = subscriber(filter_from_env(), json, std::io::stderr);
    // `try_init` also forwards the `log` crate's records (rustls, for one) into `tracing`.
    tracing_subscriber::util::SubscriberInitExt::try_init(subscriber)
        .map_err(|error| format!("cannot install the log subscriber: {error}"))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
        }
    }

    fn captured(json: bool) -> (Captured, impl tracing::Subscriber) {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(EnvFilter::new(DEFAULT_FILTER), json, move || writer.clone());
        (out, subscriber)
    }

    #[test]
    fn rumqttd_per_message_spans_are_off_and_its_errors_still_logged_with_the_client() {
        let (out, subscriber) = captured(false);
        tracing::subscriber::with_default(subscriber, || {
            let publish =
                tracing::error_span!(target: "rumqttd::router::routing", "publish", topic = "yq/t");
            assert!(publish.is_disabled());
            let batch = tracing::error_span!(target: "rumqttd::router::routing", "incoming_payload", client_id = "box-1");
            assert!(batch.is_disabled());
            let link = tracing::error_span!(target: "rumqttd::server::broker", "remote_link", client_id = "box-7");
            assert!(!link.is_disabled());
            let _in_link = link.enter();
            let _in_publish = publish.enter();
            tracing::error!(target: "rumqttd::router::routing", "disconnected: bad packet");
            tracing::info!(target: "rumqttd::router::routing", "below rumqttd's level");
        });
        let text = out.text();
        assert!(text.contains("disconnected: bad packet"), "{text}");
        assert!(text.contains("box-7"), "{text}");
        assert!(!text.contains("yq/t"), "{text}");
        assert!(!text.contains("below rumqttd's level"), "{text}");
    }

    #[test]
    fn a_clean_disconnect_is_not_logged_as_an_error() {
        let (out, subscriber) = captured(false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "rumqttd::router::routing", "no-connection id {} is already gone", 97);
            tracing::error!(target: "rumqttd::router::routing", "no-connection id {} for publish", 98);
            tracing::error!(target: "gateway::ingest", "no-connection id {} is already gone", 99);
            tracing::error!(target: "rumqttd::server::broker", error = "Recv(Disconnected)", "router-drop");
            tracing::error!(target: "rumqttd::server::broker", error = "Io(reset)", "disconnected");
            tracing::error!(target: "rumqttd::server::broker", error = ?std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection closed by peer"), "Error while handling MQTT connect packet");
            tracing::error!(target: "rumqttd::server::broker", error = "Network(Io(InvalidData))", "Error while handling MQTT connect packet");
        });
        let text = out.text();
        assert!(!text.contains("router-drop"), "{text}");
        assert!(text.contains("Io(reset)"), "{text}");
        assert!(!text.contains("ConnectionAborted"), "{text}");
        assert!(text.contains("InvalidData"), "{text}");
        assert!(!text.contains("id 97"), "{text}");
        assert!(text.contains("id 98 for publish"), "{text}");
        assert!(text.contains("id 99 is already gone"), "{text}");
    }

    #[test]
    fn spans_of_the_same_names_elsewhere_and_json_output_are_kept() {
        let (out, subscriber) = captured(true);
        tracing::subscriber::with_default(subscriber, || {
            let ours = tracing::info_span!(target: "gateway::ingest", "publish", device = "yq-1");
            assert!(!ours.is_disabled());
            let _in = ours.enter();
            tracing::warn!(target: "gateway::ingest", reason = "oversized", "reading rejected");
        });
        let text = out.text();
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("one line")).expect("a JSON line");
        assert_eq!(line["fields"]["reason"], "oversized", "{text}");
        assert_eq!(line["span"]["device"], "yq-1", "{text}");
    }
}
