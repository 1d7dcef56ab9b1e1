//! Wires the gateway's components together: store, rules, broker, ingest, notices and API, each
//! started from its config as a task on one `TaskTracker` and stopped by one
//! `CancellationToken`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rules::{Engine, RuleSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::auth::Authenticator;
use crate::broker::{self, external::ExternalSource, MessageSource};
use crate::config::BrokerMode;
use crate::config::GatewayConfig;
use crate::fleet::Fleet;
use crate::ingest::snapshot::{self, SnapshotWriter};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::orders::clock::{Clock, SharedClock, WallClock};
use crate::orders::store::Store;
use crate::orders::OrderService;
use crate::sinks::influxdb::{InfluxSink, SinkHandle, SinkStats};

/// A started gateway: where it listens and handles to its shared state.
pub struct Started {
    /// The embedded broker's listen address, or the external broker's `host:port`.
    pub mqtt: String,
    /// The embedded broker's mutual-TLS listeners, when enabled.
    pub mqtt_tls: Option<broker::TlsListeners>,
    /// The embedded broker's password listener, when enabled.
    pub mqtt_passwords: Option<SocketAddr>,
    pub http: SocketAddr,
    pub fleet: Arc<Fleet>,
    pub orders: OrderService,
    pub metrics: Arc<Metrics>,
    /// Risk scores and the cold-wave sweep.
    pub prevention: Arc<crate::prevention::Prevention>,
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

/// A token cancelled on SIGTERM or Ctrl-C, for a binary's shutdown (`gateway run`, `demo`).
/// Spawns its watcher on the current tokio runtime.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                cancel.cancel();
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        cancel.cancel();
    });
    token
}

/// Starts every component. Returns once the broker and the API accept connections.
pub async fn start(
    config: GatewayConfig,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Started> {
    let tasks = Tasks { tracker, shutdown };
    let metrics = Arc::new(Metrics::default());
    let rules = load_rules(&config)?;
    let mut store = Store::open(&config.store.path).map_err(|e| {
        anyhow::anyhow!("cannot open the store {}: {e}", config.store.path.display())
    })?;
    let mut rules = restore_rules(&config, rules, &mut store)?;
    import_registry(&config, &mut store)?;
    register_devices(&store, &mut rules.engine)?;
    rules.rules_modified = config
        .rules
        .path
        .as_ref()
        .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let fleet = Arc::new(Fleet::default());
    let sink = crate::sinks::influxdb::build(&config.influxdb)?;
    let (orders, watermark_clock) = order_service(&config, store, &metrics);
    let mqtt = match (&config.broker.mode, &config.broker.external) {
        (BrokerMode::External, Some(external)) => connect_external(external)?,
        _ => start_embedded(&config, &metrics).await?,
    };
    let shared = Shared {
        orders: orders.with_notifier(Arc::clone(&mqtt.publisher)),
        fleet,
        metrics,
    };
    start_notices(&config, &shared, mqtt.publisher, &tasks)?;
    let sink_shutdown = start_ingest(
        &config,
        rules,
        mqtt.source,
        watermark_clock,
        &shared,
        sink.as_ref().map(|(_, handle)| handle.clone()),
        &tasks,
    )?;
    let sink_stats = start_history(&config, sink, &shared.orders, sink_shutdown, &tasks);

    let sla_monitor = shared.orders.clone();
    tasks.spawn_logged(
        "SLA monitor stopped",
        sla_monitor.run_sla_monitor(tasks.shutdown.clone()),
    );
    let prevention = start_prevention(&config, &shared, &tasks)?;
    let http = start_api(&config, &shared, &prevention, sink_stats, &tasks).await?;
    tracing::info!(mqtt = %mqtt.address, %http, "gateway started");
    let Shared {
        fleet,
        orders,
        metrics,
    } = shared;
    Ok(Started {
        mqtt: mqtt.address,
        mqtt_tls: mqtt.tls,
        mqtt_passwords: mqtt.passwords,
        http,
        fleet,
        orders,
        metrics,
        prevention,
    })
}

/// The state the gateway's tasks share.
struct Shared {
    fleet: Arc<Fleet>,
    orders: OrderService,
    metrics: Arc<Metrics>,
}

/// Where the gateway's tasks run and the token that stops them.
struct Tasks<'a> {
    tracker: &'a TaskTracker,
    shutdown: CancellationToken,
}

impl Tasks<'_> {
    /// Spawns `task` on the tracker; an error it ends with is logged under `what`.
    fn spawn_logged(
        &self,
        what: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tracker.spawn(async move {
            if let Err(error) = task.await {
                tracing::error!(error = %format!("{error:#}"), "{what}");
            }
        });
    }
}

/// The rule engine as restored at start-up, with what ingest needs to keep its state.
struct RulesState {
    engine: Engine,
    snapshot_path: PathBuf,
    /// The snapshot came from an earlier version's store entry, deleted after the first write.
    delete_store_entry: bool,
    /// When the rule file was last modified (hot reload compares it).
    rules_modified: Option<SystemTime>,
}

/// Restores the rule engine from the snapshot file (creating its folder), or from the store
/// entry of an earlier version; an unreadable file is set aside and the rules start with empty
/// state. The snapshot is reconciled with the rules and the store first.
fn restore_rules(
    config: &GatewayConfig,
    rules: RuleSet,
    store: &mut Store,
) -> anyhow::Result<RulesState> {
    let engine_config = rules::EngineConfig {
        lateness: config.rules.lateness,
        ..rules::EngineConfig::default()
    };
    let snapshot_path = config.snapshot_path();
    if let Some(folder) = snapshot_path.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|e| {
            anyhow::anyhow!(
                "rules.snapshot_path: cannot create the folder {}: {e}",
                folder.display()
            )
        })?;
    }
    let mut loaded = snapshot::load(&snapshot_path, store)?;
    snapshot::reconcile(
        loaded.snapshot.as_mut(),
        &rules,
        store,
        crate::ingest::now_ms(),
    )?;
    let engine = match loaded.snapshot {
        Some(snapshot) => Engine::restore_with_config(rules, engine_config, snapshot),
        None => Engine::with_config(rules, engine_config),
    };
    Ok(RulesState {
        engine,
        snapshot_path,
        delete_store_entry: loaded.delete_store_entry,
        rules_modified: None,
    })
}

/// Imports the registry folder named by `registry.import`, if any.
fn import_registry(config: &GatewayConfig, store: &mut Store) -> anyhow::Result<()> {
    if let Some(folder) = &config.registry.import {
        let files = crate::registry::read_dir(folder)?;
        let data = crate::registry::parse(&files, &store.known_ids()?)?;
        let summary = store.import_registry(&data)?;
        tracing::info!(folder = %folder.display(), households = summary.households, devices = summary.devices, teams = summary.teams, "registry imported");
    }
    Ok(())
}

/// Tells the rules each registered device's township, village, household, vulnerability and
/// site type (fleet rules count households; overrides for vulnerable households, and for site
/// types by the tag `site:{type}`: a greenhouse's plants, a clinic's patients).
fn register_devices(store: &Store, engine: &mut Engine) -> anyhow::Result<()> {
    let registered = store.registered_devices()?;
    for (id, info) in registered
        .iter()
        .filter_map(crate::ingest::registry::rules_device)
    {
        engine.register_device(id, info);
    }
    tracing::info!(
        devices = registered.len(),
        "registered devices given to the rules"
    );
    Ok(())
}

/// The order service over `store`, on the wall clock or, in event-time mode, on a clock the
/// rules' watermark drives (returned for ingest to advance) and led by the lateness.
fn order_service(
    config: &GatewayConfig,
    store: Store,
    metrics: &Arc<Metrics>,
) -> (OrderService, Option<SharedClock>) {
    let (clock, watermark_clock): (Arc<dyn Clock>, Option<SharedClock>) = match config.rules.clock {
        crate::config::Clock::Wall => (Arc::new(WallClock), None),
        crate::config::Clock::Event => {
            let clock = SharedClock::new(0);
            (Arc::new(clock.clone()), Some(clock))
        }
    };
    let mut orders = OrderService::new(store, Arc::clone(metrics), clock, config.sla)
        .with_delegation(config.delegation);
    if config.rules.clock == crate::config::Clock::Event {
        orders = orders.with_clock_lead(config.rules.lateness);
    }
    (orders, watermark_clock)
}

/// The MQTT side as started: where ingest reads and orders are published, and where it listens.
struct Mqtt {
    source: MessageSource,
    publisher: Arc<dyn crate::orders::TeamNotifier>,
    /// The embedded broker's listen address, or the external broker's `host:port`.
    address: String,
    tls: Option<broker::TlsListeners>,
    passwords: Option<SocketAddr>,
}

/// Connects to an external MQTT broker (scale-out mode).
fn connect_external(
    external: &crate::broker::external::ExternalBrokerConfig,
) -> anyhow::Result<Mqtt> {
    let source = ExternalSource::new(external).map_err(|e| anyhow::anyhow!(e))?;
    let publisher: Arc<dyn crate::orders::TeamNotifier> =
        Arc::new(broker::ExternalOrderPublisher {
            client: source.client.clone(),
        });
    tracing::info!(host = %external.host, port = external.port, townships = ?external.townships, "using an external MQTT broker (scale-out mode)");
    Ok(Mqtt {
        source: MessageSource::External(Box::new(source)),
        publisher,
        address: format!("{}:{}", external.host, external.port),
        tls: None,
        passwords: None,
    })
}

/// Starts the embedded broker and waits until each of its listeners accepts connections.
async fn start_embedded(config: &GatewayConfig, metrics: &Arc<Metrics>) -> anyhow::Result<Mqtt> {
    let broker = broker::start(&config.broker)?;
    metrics.set_broker_guards(broker.guards.clone(), Arc::clone(&broker.password_failures));
    let mut passwords = None;
    if let Some(address) = broker.passwords {
        wait_until_listening(address, Duration::from_secs(10)).await?;
        passwords = Some(address);
    }
    wait_until_listening(broker.listen, Duration::from_secs(10)).await?;
    let mut tls = None;
    if let Some(listeners) = broker.tls {
        wait_until_listening(listeners.v4, Duration::from_secs(10)).await?;
        if let Some(v5) = listeners.v5 {
            wait_until_listening(v5, Duration::from_secs(10)).await?;
        }
        tls = Some(listeners);
    }
    let publisher: Arc<dyn crate::orders::TeamNotifier> = Arc::new(
        broker::TeamOrderPublisher::new(broker.links.clone(), Arc::clone(metrics))?,
    );
    Ok(Mqtt {
        source: MessageSource::Embedded(Box::new(broker::EmbeddedSource::open(broker.links)?)),
        publisher,
        address: broker.listen.to_string(),
        tls,
        passwords,
    })
}

/// Notices to people (webhook, SMS gateway, MQTT) and the 12345 round trip (replies on the
/// city's tickets, read from the store after a cursor). Subscribed before any order event can
/// happen; each sink delivers on its own task, so order processing never waits on a receiver.
fn start_notices(
    config: &GatewayConfig,
    shared: &Shared,
    publisher: Arc<dyn crate::orders::TeamNotifier>,
    tasks: &Tasks,
) -> anyhow::Result<()> {
    let mut extra_sinks: Vec<Box<dyn crate::notify::NoticeSink>> = Vec::new();
    if config.notify.mqtt {
        extra_sinks.push(Box::new(crate::notify::mqtt::MqttSink::new(
            publisher,
            Arc::clone(&shared.metrics),
        )));
    }
    if let Some((notifier, workers)) = crate::notify::Notifier::with_sinks(
        &config.notify,
        &shared.orders,
        Arc::clone(&shared.metrics),
        extra_sinks,
    )? {
        for worker in workers {
            tasks.spawn_logged(
                "notice delivery stopped",
                worker.run(tasks.shutdown.clone()),
            );
        }
        tasks.spawn_logged("notifier stopped", notifier.run(tasks.shutdown.clone()));
    }
    if let Some(sender) = crate::notify::CitySender::new(
        &config.notify.city,
        &shared.orders,
        Arc::clone(&shared.metrics),
    )? {
        tasks.spawn_logged("12345 replies stopped", sender.run(tasks.shutdown.clone()));
    }
    Ok(())
}

/// Builds ingest over the restored rules, subscribes it, and runs it until shutdown; when it
/// fails it shuts the gateway down. Returns the token that stops the history sink: cancelled
/// once ingest has stopped, so that the sink flushes what ingest gave it last.
fn start_ingest(
    config: &GatewayConfig,
    rules: RulesState,
    source: MessageSource,
    watermark_clock: Option<SharedClock>,
    shared: &Shared,
    sink: Option<SinkHandle>,
    tasks: &Tasks,
) -> anyhow::Result<CancellationToken> {
    let mut snapshots = SnapshotWriter::new(rules.snapshot_path, Arc::clone(&shared.metrics));
    if rules.delete_store_entry {
        snapshots = snapshots.delete_store_entry_after_first_write(shared.orders.clone());
    }
    let mut ingest = Ingest {
        source,
        engine: rules.engine,
        fleet: Arc::clone(&shared.fleet),
        orders: shared.orders.clone(),
        metrics: Arc::clone(&shared.metrics),
        ingest: config.ingest.clone(),
        rules: config.rules.clone(),
        watermark_clock,
        sink,
        rules_modified: rules.rules_modified,
        registry: crate::ingest::registry::RegistryCheck::new(
            shared.orders.clone(),
            Arc::clone(&shared.metrics),
            Arc::clone(&shared.fleet),
        ),
        snapshots,
        refusal_log: Default::default(),
        vendor_names: Default::default(),
        boot_clocks: Default::default(),
    };
    ingest.subscribe()?;
    let sink_shutdown = CancellationToken::new();
    let ingest_shutdown = tasks.shutdown.clone();
    let after_ingest = sink_shutdown.clone();
    tasks.tracker.spawn(async move {
        if let Err(error) = ingest.run(ingest_shutdown.clone()).await {
            tracing::error!(error = %format!("{error:#}"), "ingest stopped; shutting the gateway down");
            ingest_shutdown.cancel();
        }
        after_ingest.cancel();
    });
    Ok(sink_shutdown)
}

/// Runs the InfluxDB history sink, if configured, with every order event forwarded to it;
/// returns its counters for the API.
fn start_history(
    config: &GatewayConfig,
    sink: Option<(InfluxSink, SinkHandle)>,
    orders: &OrderService,
    sink_shutdown: CancellationToken,
    tasks: &Tasks,
) -> Option<Arc<SinkStats>> {
    let (task, handle) = sink?;
    let stats = handle.stats();
    let notices = orders.subscribe();
    tasks.tracker.spawn(forward_order_events(
        notices,
        handle,
        config.sla,
        tasks.shutdown.clone(),
    ));
    tasks.spawn_logged(
        "InfluxDB sink stopped",
        task.run(sink_shutdown, Duration::from_secs(5)),
    );
    tracing::info!(url = ?config.influxdb.url, bucket = %config.influxdb.bucket, "InfluxDB history enabled");
    Some(stats)
}

/// Prevention before the cold: the forecast poller and, with `auto_open`, the sweep.
fn start_prevention(
    config: &GatewayConfig,
    shared: &Shared,
    tasks: &Tasks,
) -> anyhow::Result<Arc<crate::prevention::Prevention>> {
    let prevention = crate::prevention::Prevention::new(
        config.prevention.clone(),
        shared.orders.clone(),
        Arc::clone(&shared.fleet),
        Arc::clone(&shared.metrics),
    )?;
    tasks.spawn_logged(
        "the cold-wave sweep stopped",
        Arc::clone(&prevention).run(tasks.shutdown.clone()),
    );
    Ok(prevention)
}

/// Binds the HTTP API (and the token-free `/metrics` listener, when configured) and serves it
/// until shutdown; when the API fails it shuts the gateway down. Returns the API's address.
async fn start_api(
    config: &GatewayConfig,
    shared: &Shared,
    prevention: &Arc<crate::prevention::Prevention>,
    sink: Option<Arc<SinkStats>>,
    tasks: &Tasks<'_>,
) -> anyhow::Result<SocketAddr> {
    let listener = api::bind(config.http.listen).await?;
    let http = listener.local_addr()?;
    let state = ApiState {
        fleet: Arc::clone(&shared.fleet),
        orders: shared.orders.clone(),
        metrics: Arc::clone(&shared.metrics),
        auth: Arc::new(Authenticator::new(&config.api)),
        sink,
    };
    if config.api.auth == crate::config::AuthMode::Disabled {
        tracing::warn!(
            "API authentication is disabled: anyone who reaches the HTTP port is an operator"
        );
    }
    if let Some(address) = config.http.metrics_listen {
        let metrics_listener = api::bind(address).await?;
        tracing::info!(address = %metrics_listener.local_addr()?, "/metrics served without a token on loopback");
        let app = api::metrics_router(state.clone());
        let limits = config.http.clone();
        let metrics = Arc::clone(&shared.metrics);
        let shutdown = tasks.shutdown.clone();
        tasks.spawn_logged("the /metrics listener stopped", async move {
            api::serve_with(metrics_listener, app, metrics, &limits, shutdown).await
        });
    }
    let api_shutdown = tasks.shutdown.clone();
    let app = api::router_with(state, config.http.request_timeout)
        .layer(axum::Extension(Arc::clone(prevention)))
        .layer(axum::Extension(config.campaigns.clone()));
    let limits = config.http.clone();
    let api_metrics = Arc::clone(&shared.metrics);
    tasks.tracker.spawn(async move {
        if let Err(error) =
            api::serve_with(listener, app, api_metrics, &limits, api_shutdown.clone()).await
        {
            tracing::error!(error = %format!("{error:#}"), "HTTP API stopped; shutting the gateway down");
            api_shutdown.cancel();
        }
    });
    Ok(http)
}

/// Writes every order event to the history sink.
async fn forward_order_events(
    mut notices: tokio::sync::broadcast::Receiver<crate::orders::OrderNotice>,
    sink: crate::sinks::influxdb::SinkHandle,
    sla: crate::orders::sla::SlaConfig,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            notice = notices.recv() => match notice {
                Ok(notice) => sink.order(&notice, &sla),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "order events were not written to InfluxDB: the sink fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
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
