//! Wires the gateway's components together: store, rules, broker, ingest and API, each started
//! from its config as a task on one `TaskTracker` and stopped by one `CancellationToken`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rules::{Engine, RuleSet, Snapshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::broker;
use crate::config::GatewayConfig;
use crate::fleet::Fleet;
use crate::ingest::{Ingest, SNAPSHOT_KEY};
use crate::metrics::Metrics;
use crate::orders::store::Store;
use crate::orders::OrderService;

/// A started gateway: where it listens and handles to its shared state.
pub struct Started {
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub fleet: Arc<Fleet>,
    pub orders: OrderService,
    pub metrics: Arc<Metrics>,
}

/// Loads the rule set named by the config, or the built-in default pack.
pub fn load_rules(config: &GatewayConfig) -> anyhow::Result<RuleSet> {
    match &config.rules.path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: cannot be read: {e}", path.display()))?;
            Ok(RuleSet::parse(&text, &path.display().to_string())?)
        }
        None => Ok(RuleSet::parse(
            rules::DEFAULT_RULES,
            "<built-in default rules>",
        )?),
    }
}

/// Starts every component. Returns once the broker and the API accept connections.
pub async fn start(
    config: GatewayConfig,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Started> {
    let metrics = Arc::new(Metrics::default());
    let rules = load_rules(&config)?;
    let store = Store::open(&config.store.path).map_err(|e| {
        anyhow::anyhow!("cannot open the store {}: {e}", config.store.path.display())
    })?;
    let engine = match store.get(SNAPSHOT_KEY)? {
        Some(json) => match serde_json::from_str::<Snapshot>(&json) {
            Ok(snapshot) => {
                tracing::info!("rule state restored from the last snapshot");
                Engine::restore(rules, snapshot)
            }
            Err(error) => {
                tracing::warn!(%error, "the saved rule state is unreadable; starting with empty state");
                Engine::new(rules)
            }
        },
        None => Engine::new(rules),
    };
    let orders = OrderService::new(store, Arc::clone(&metrics));
    let fleet = Arc::new(Fleet::default());

    let broker = broker::start(&config.broker, "gateway-ingest")?;
    wait_until_listening(broker.listen, Duration::from_secs(10)).await?;
    let mqtt = broker.listen;

    let ingest = Ingest {
        link_tx: broker.link_tx,
        link_rx: broker.link_rx,
        engine,
        fleet: Arc::clone(&fleet),
        orders: orders.clone(),
        metrics: Arc::clone(&metrics),
        ingest: config.ingest.clone(),
        rules: config.rules.clone(),
    };
    let ingest_shutdown = shutdown.clone();
    tracker.spawn(async move {
        if let Err(error) = ingest.run(ingest_shutdown.clone()).await {
            tracing::error!(error = %format!("{error:#}"), "ingest stopped; shutting the gateway down");
            ingest_shutdown.cancel();
        }
    });

    let listener = api::bind(config.http.listen).await?;
    let http = listener.local_addr()?;
    let state = ApiState {
        fleet: Arc::clone(&fleet),
        orders: orders.clone(),
        metrics: Arc::clone(&metrics),
    };
    let api_shutdown = shutdown.clone();
    tracker.spawn(async move {
        if let Err(error) = api::serve(listener, state, api_shutdown.clone()).await {
            tracing::error!(error = %format!("{error:#}"), "HTTP API stopped; shutting the gateway down");
            api_shutdown.cancel();
        }
    });
    tracing::info!(%mqtt, %http, "gateway started");
    Ok(Started {
        mqtt,
        http,
        fleet,
        orders,
        metrics,
    })
}

/// Waits until `address` accepts TCP connections (rumqttd binds on its own thread).
async fn wait_until_listening(address: SocketAddr, deadline: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > deadline {
            anyhow::bail!(
                "the MQTT broker did not start listening on {address} within {deadline:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
