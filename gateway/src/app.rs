//! Wires the gateway's components together: store, rules, broker, ingest, notices and API, each
//! started from its config as a task on one `TaskTracker` and stopped by one
//! `CancellationToken`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let metrics = Arc::new(Metrics::default());
    let rules = load_rules(&config)?;
    let store = Store::open(&config.store.path).map_err(|e| {
        anyhow::anyhow!("cannot open the store {}: {e}", config.store.path.display())
    })?;
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
    // The snapshot file, or the store entry of an earlier version; an unreadable file is set
    // aside and the rules start with empty state.
    let mut loaded = snapshot::load(&snapshot_path, &store)?;
    let mut store = store;
    snapshot::reconcile(
        loaded.snapshot.as_mut(),
        &rules,
        &mut store,
        crate::ingest::now_ms(),
    )?;
    let mut engine = match loaded.snapshot {
        Some(snapshot) => Engine::restore_with_config(rules, engine_config, snapshot),
        None => Engine::with_config(rules, engine_config),
    };
    if let Some(folder) = &config.registry.import {
        let files = crate::registry::read_dir(folder)?;
        let data = crate::registry::parse(&files, &store.known_ids()?)?;
        let summary = store.import_registry(&data)?;
        tracing::info!(folder = %folder.display(), households = summary.households, devices = summary.devices, teams = summary.teams, "registry imported");
    }
    // The rules know each registered device's township, village, household, vulnerability and
    // site type (fleet rules count households; overrides for vulnerable households, and for
    // site types by the tag `site:{type}`: a greenhouse's plants, a clinic's patients).
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
    let rules_modified = config
        .rules
        .path
        .as_ref()
        .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let (clock, watermark_clock): (Arc<dyn Clock>, Option<SharedClock>) = match config.rules.clock {
        crate::config::Clock::Wall => (Arc::new(WallClock), None),
        crate::config::Clock::Event => {
            let clock = SharedClock::new(0);
            (Arc::new(clock.clone()), Some(clock))
        }
    };
    let fleet = Arc::new(Fleet::default());
    let sink = crate::sinks::influxdb::build(&config.influxdb)?;

    let mut orders = OrderService::new(store, Arc::clone(&metrics), clock, config.sla)
        .with_delegation(config.delegation);
    if config.rules.clock == crate::config::Clock::Event {
        orders = orders.with_clock_lead(config.rules.lateness);
    }
    let mut mqtt_tls = None;
    let mut mqtt_passwords = None;
    let (source, orders, mqtt, publisher): (_, _, _, Arc<dyn crate::orders::TeamNotifier>) = match (
        &config.broker.mode,
        &config.broker.external,
    ) {
        (BrokerMode::External, Some(external)) => {
            let source = ExternalSource::new(external).map_err(|e| anyhow::anyhow!(e))?;
            let publisher: Arc<dyn crate::orders::TeamNotifier> =
                Arc::new(broker::ExternalOrderPublisher {
                    client: source.client.clone(),
                });
            tracing::info!(host = %external.host, port = external.port, townships = ?external.townships, "using an external MQTT broker (scale-out mode)");
            (
                MessageSource::External(Box::new(source)),
                orders.with_notifier(Arc::clone(&publisher)),
                format!("{}:{}", external.host, external.port),
                publisher,
            )
        }
        _ => {
            let broker = broker::start(&config.broker)?;
            metrics.set_broker_guards(broker.guards.clone(), Arc::clone(&broker.password_failures));
            if let Some(address) = broker.passwords {
                wait_until_listening(address, Duration::from_secs(10)).await?;
                mqtt_passwords = Some(address);
            }
            wait_until_listening(broker.listen, Duration::from_secs(10)).await?;
            if let Some(tls) = broker.tls {
                wait_until_listening(tls.v4, Duration::from_secs(10)).await?;
                if let Some(v5) = tls.v5 {
                    wait_until_listening(v5, Duration::from_secs(10)).await?;
                }
                mqtt_tls = Some(tls);
            }
            let publisher: Arc<dyn crate::orders::TeamNotifier> = Arc::new(
                broker::TeamOrderPublisher::new(broker.links.clone(), Arc::clone(&metrics))?,
            );
            (
                MessageSource::Embedded(Box::new(broker::EmbeddedSource::open(broker.links)?)),
                orders.with_notifier(Arc::clone(&publisher)),
                broker.listen.to_string(),
                publisher,
            )
        }
    };

    // Notices to people (webhook, SMS gateway): subscribed before any order event can happen;
    // each sink delivers on its own task, so order processing never waits on a receiver.
    let mut extra_sinks: Vec<Box<dyn crate::notify::NoticeSink>> = Vec::new();
    if config.notify.mqtt {
        extra_sinks.push(Box::new(crate::notify::mqtt::MqttSink::new(
            publisher,
            Arc::clone(&metrics),
        )));
    }
    if let Some((notifier, workers)) = crate::notify::Notifier::with_sinks(
        &config.notify,
        &orders,
        Arc::clone(&metrics),
        extra_sinks,
    )? {
        for worker in workers {
            let worker_shutdown = shutdown.clone();
            tracker.spawn(async move {
                if let Err(error) = worker.run(worker_shutdown).await {
                    tracing::error!(error = %format!("{error:#}"), "notice delivery stopped");
                }
            });
        }
        let notifier_shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(error) = notifier.run(notifier_shutdown).await {
                tracing::error!(error = %format!("{error:#}"), "notifier stopped");
            }
        });
    }

    // The 12345 round trip: replies on the city's tickets, read from the store after a cursor.
    if let Some(sender) =
        crate::notify::CitySender::new(&config.notify.city, &orders, Arc::clone(&metrics))?
    {
        let city_shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(error) = sender.run(city_shutdown).await {
                tracing::error!(error = %format!("{error:#}"), "12345 replies stopped");
            }
        });
    }

    let mut snapshots = SnapshotWriter::new(snapshot_path, Arc::clone(&metrics));
    if loaded.delete_store_entry {
        snapshots = snapshots.delete_store_entry_after_first_write(orders.clone());
    }
    let mut ingest = Ingest {
        source,
        engine,
        fleet: Arc::clone(&fleet),
        orders: orders.clone(),
        metrics: Arc::clone(&metrics),
        ingest: config.ingest.clone(),
        rules: config.rules.clone(),
        watermark_clock,
        sink: sink.as_ref().map(|(_, handle)| handle.clone()),
        rules_modified,
        registry: crate::ingest::registry::RegistryCheck::new(
            orders.clone(),
            Arc::clone(&metrics),
            Arc::clone(&fleet),
        ),
        snapshots,
        refusal_log: Default::default(),
        vendor_names: Default::default(),
        boot_clocks: Default::default(),
    };
    ingest.subscribe()?;
    // The sink stops after ingest, so that it flushes what ingest gave it last.
    let sink_shutdown = CancellationToken::new();
    let ingest_shutdown = shutdown.clone();
    let after_ingest = sink_shutdown.clone();
    tracker.spawn(async move {
        if let Err(error) = ingest.run(ingest_shutdown.clone()).await {
            tracing::error!(error = %format!("{error:#}"), "ingest stopped; shutting the gateway down");
            ingest_shutdown.cancel();
        }
        after_ingest.cancel();
    });
    let sink_stats = match sink {
        Some((task, handle)) => {
            let stats = handle.stats();
            let notices = orders.subscribe();
            let sla = config.sla;
            let order_shutdown = shutdown.clone();
            tracker.spawn(forward_order_events(notices, handle, sla, order_shutdown));
            tracker.spawn(async move {
                if let Err(error) = task.run(sink_shutdown, Duration::from_secs(5)).await {
                    tracing::error!(error = %format!("{error:#}"), "InfluxDB sink stopped");
                }
            });
            tracing::info!(url = ?config.influxdb.url, bucket = %config.influxdb.bucket, "InfluxDB history enabled");
            Some(stats)
        }
        None => None,
    };

    let sla_shutdown = shutdown.clone();
    let sla_monitor = orders.clone();
    tracker.spawn(async move {
        if let Err(error) = sla_monitor.run_sla_monitor(sla_shutdown).await {
            tracing::error!(error = %format!("{error:#}"), "SLA monitor stopped");
        }
    });

    // Prevention before the cold: the forecast poller and, with `auto_open`, the sweep.
    let prevention = crate::prevention::Prevention::new(
        config.prevention.clone(),
        orders.clone(),
        Arc::clone(&fleet),
        Arc::clone(&metrics),
    )?;
    let prevention_shutdown = shutdown.clone();
    let poller = Arc::clone(&prevention);
    tracker.spawn(async move {
        if let Err(error) = poller.run(prevention_shutdown).await {
            tracing::error!(error = %format!("{error:#}"), "the cold-wave sweep stopped");
        }
    });

    let listener = api::bind(config.http.listen).await?;
    let http = listener.local_addr()?;
    let state = ApiState {
        fleet: Arc::clone(&fleet),
        orders: orders.clone(),
        metrics: Arc::clone(&metrics),
        auth: Arc::new(Authenticator::new(&config.api)),
        sink: sink_stats,
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
        let metrics_shutdown = shutdown.clone();
        let metrics = Arc::clone(&metrics);
        tracker.spawn(async move {
            if let Err(error) =
                api::serve_with(metrics_listener, app, metrics, &limits, metrics_shutdown).await
            {
                tracing::error!(error = %format!("{error:#}"), "the /metrics listener stopped");
            }
        });
    }
    let api_shutdown = shutdown.clone();
    let app = api::router_with(state.clone(), config.http.request_timeout)
        .layer(axum::Extension(Arc::clone(&prevention)))
        .layer(axum::Extension(config.campaigns.clone()));
    let limits = config.http.clone();
    let api_metrics = Arc::clone(&metrics);
    tracker.spawn(async move {
        if let Err(error) =
            api::serve_with(listener, app, api_metrics, &limits, api_shutdown.clone()).await
        {
            tracing::error!(error = %format!("{error:#}"), "HTTP API stopped; shutting the gateway down");
            api_shutdown.cancel();
        }
    });
    tracing::info!(%mqtt, %http, "gateway started");
    Ok(Started {
        mqtt,
        mqtt_tls,
        mqtt_passwords,
        http,
        fleet,
        orders,
        metrics,
        prevention,
    })
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
