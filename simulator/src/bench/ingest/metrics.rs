//! The gateway's `/metrics` as the bench reads them: one scrape's counters ([`Scrape`]), the
//! client that fetches them, and the history sink's accounting in one scrape ([`SinkCounts`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::options::IngestError;

/// The counters of one `/metrics` scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    pub(super) fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(char::is_whitespace) else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let key = key.trim();
            let (name, labels) = match key.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (key, BTreeMap::new()),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Scrape { samples }
    }

    /// Whether the gateway exposes this metric at all.
    pub(super) fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// The sum of a counter over all its label sets.
    pub(super) fn total(&self, name: &str) -> u64 {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v as u64)
            .sum()
    }

    /// A counter by the value of one label (non-zero entries only).
    pub(super) fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (n, labels, value) in &self.samples {
            if n == name && *value > 0.0 {
                let key = labels.get(label).cloned().unwrap_or_default();
                *out.entry(key).or_insert(0) += *value as u64;
            }
        }
        out
    }

    /// Readings accepted or rejected.
    pub(super) fn handled(&self) -> u64 {
        self.total("gateway_readings_accepted_total")
            + self.total("gateway_messages_rejected_total")
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(
            name.trim_start_matches(',').trim().to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    labels
}

/// The history sink's accounting in one scrape, from the gateway's start.
///
/// A point ingest hands to the sink is either refused at once (the channel full, or no point
/// could be built: both counted as drops) or queued on the channel, from which the sink task
/// takes it into its buffer, writes it (a batch in flight counts as buffered) and counts it
/// written or dropped. So once the sink has written or dropped as many points as were handed
/// to it, none waits in the channel either; with nothing buffered it has settled.
///
/// How many were handed over: `gateway_influx_points_queued_total` plus the points refused at
/// once. A gateway without that counter (older builds) is judged on what it hands over for
/// every accepted reading (one point) and every rule transition (one point), which it does
/// count; order-event and incident points, which no other counter names, are then outside the
/// figure (a handful in a bench run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SinkCounts {
    pub(super) written: u64,
    /// Every drop, whatever its reason.
    pub(super) dropped: u64,
    /// Points in the sink task: its buffer, a refused batch's parts and the write in flight.
    pub(super) buffered: u64,
    /// Points handed to the sink (see above).
    pub(super) handed_over: u64,
    /// `handed_over` comes from the sink's own queued counter.
    pub(super) exact: bool,
}

/// The sink's queued counter (points that entered its channel).
const POINTS_QUEUED: &str = "gateway_influx_points_queued_total";
const POINTS_DROPPED: &str = "gateway_influx_points_dropped_total";

impl SinkCounts {
    pub(super) fn of(scrape: &Scrape) -> SinkCounts {
        let dropped = scrape.by_label(POINTS_DROPPED, "reason");
        let counted = scrape.total("gateway_readings_accepted_total")
            + scrape.total("gateway_rule_transitions_total");
        let exact = scrape.has(POINTS_QUEUED);
        let queued = exact.then(|| {
            let refused_at_once = ["channel_full", "invalid"]
                .iter()
                .filter_map(|reason| dropped.get(*reason))
                .sum::<u64>();
            scrape.total(POINTS_QUEUED) + refused_at_once
        });
        SinkCounts {
            written: scrape.total("gateway_influx_points_written_total"),
            dropped: dropped.values().sum(),
            buffered: scrape.total("gateway_influx_buffered_points"),
            handed_over: queued.map_or(counted, |queued| queued.max(counted)),
            exact,
        }
    }

    /// Points the sink is done with: written or dropped.
    pub(super) fn finished(&self) -> u64 {
        self.written + self.dropped
    }

    /// Every point handed over is written or dropped, and nothing waits to be written.
    pub(super) fn settled(&self) -> bool {
        self.buffered == 0 && self.finished() >= self.handed_over
    }
}

impl std::fmt::Display for SinkCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sink {} of {} points handed over written, {} dropped, {} buffered",
            self.written, self.handed_over, self.dropped, self.buffered
        )
    }
}

/// Reads the gateway's `/metrics`.
pub(super) struct MetricsClient {
    client: reqwest::Client,
    url: String,
}

impl MetricsClient {
    pub(super) fn new(http: SocketAddr) -> Result<MetricsClient, IngestError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| IngestError::Gateway(format!("cannot build the HTTP client: {e}")))?;
        Ok(MetricsClient {
            client,
            url: format!("http://{http}/metrics"),
        })
    }

    pub(super) async fn read(&self) -> Result<Scrape, IngestError> {
        self.scrape().await.map_err(IngestError::Gateway)
    }

    async fn scrape(&self) -> Result<Scrape, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        if !status.is_success() {
            return Err(format!("GET {}: {status}: {text}", self.url));
        }
        Ok(Scrape::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_is_read_by_name_and_label() {
        let text = "# HELP gateway_readings_accepted_total x\n\
                    # TYPE gateway_readings_accepted_total counter\n\
                    gateway_readings_accepted_total 120\n\
                    gateway_messages_rejected_total{reason=\"malformed\"} 3\n\
                    gateway_messages_rejected_total{reason=\"out_of_range\"} 2\n\
                    gateway_messages_rejected_total{reason=\"bad_topic\"} 0\n\
                    gateway_alerts_fired_total{rule=\"device_fault\",severity=\"major\"} 7\n";
        let scrape = Scrape::parse(text);
        assert_eq!(scrape.total("gateway_readings_accepted_total"), 120);
        assert_eq!(scrape.handled(), 125);
        assert_eq!(
            scrape.by_label("gateway_messages_rejected_total", "reason"),
            BTreeMap::from([("malformed".to_owned(), 3), ("out_of_range".to_owned(), 2)])
        );
        assert_eq!(
            scrape.by_label("gateway_alerts_fired_total", "rule"),
            BTreeMap::from([("device_fault".to_owned(), 7)])
        );
        assert_eq!(scrape.total("missing_total"), 0);
        assert!(scrape.has("gateway_readings_accepted_total"));
        assert!(!scrape.has("missing_total"));
    }

    fn sink_scrape(written: u64, buffered: u64, channel_full: u64, queued: Option<u64>) -> Scrape {
        let mut text = format!(
            "gateway_readings_accepted_total 100\n\
             gateway_rule_transitions_total 4\n\
             gateway_influx_points_written_total {written}\n\
             gateway_influx_points_dropped_total{{reason=\"channel_full\"}} {channel_full}\n\
             gateway_influx_points_dropped_total{{reason=\"buffer_full\"}} 0\n\
             gateway_influx_buffered_points {buffered}\n"
        );
        if let Some(queued) = queued {
            text.push_str(&format!("{POINTS_QUEUED} {queued}\n"));
        }
        Scrape::parse(&text)
    }

    #[test]
    fn the_sink_settles_once_every_point_handed_over_is_written_or_dropped() {
        // A point per accepted reading and per transition: 104 handed over.
        let counts = SinkCounts::of(&sink_scrape(104, 0, 0, None));
        assert_eq!(counts.handed_over, 104);
        assert!(counts.settled() && !counts.exact);
        assert!(
            !SinkCounts::of(&sink_scrape(100, 0, 0, None)).settled(),
            "four points still in the channel"
        );
        assert!(
            !SinkCounts::of(&sink_scrape(104, 5, 0, None)).settled(),
            "points buffered"
        );
        let dropped = SinkCounts::of(&sink_scrape(94, 0, 10, None));
        assert!(dropped.settled(), "drops are finished points too");
        assert_eq!(dropped.dropped, 10);

        // With the queued counter: order points (not counted by the gateway) are waited for.
        let exact = SinkCounts::of(&sink_scrape(104, 0, 0, Some(110)));
        assert!(exact.exact);
        assert_eq!(exact.handed_over, 110);
        assert!(!exact.settled());
        assert!(SinkCounts::of(&sink_scrape(110, 0, 0, Some(110))).settled());
    }
}
