//! Work orders: opened from rule alerts (exactly one per alert episode), stored with their
//! event history in SQLite. [`OrderService`] is the component; [`store::Store`] the database.

pub mod model;
pub mod store;

use std::sync::{Arc, Mutex};

use rules::{Action, Transition, TransitionKind};

pub use model::OrderState;
use store::{AlertRow, NewOrder, Store, StoreError};

use crate::metrics::Metrics;

/// The order component: shared by ingest (writes) and the API (reads).
#[derive(Clone)]
pub struct OrderService {
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
}

impl OrderService {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            store: Arc::new(Mutex::new(store)),
            metrics,
        }
    }

    /// Runs `f` with the store on a blocking thread.
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut guard = store
                .lock()
                .map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    /// Applies rule transitions: records alerts, opens orders for firing alerts whose action
    /// asks for one. Returns the ids of newly opened orders.
    pub async fn apply(
        &self,
        transitions: Vec<(Transition, String)>,
    ) -> Result<Vec<i64>, StoreError> {
        if transitions.is_empty() {
            return Ok(Vec::new());
        }
        let metrics = Arc::clone(&self.metrics);
        self.with_store(move |store| {
            let mut opened = Vec::new();
            for (transition, township) in transitions {
                match transition.kind {
                    TransitionKind::Firing => {
                        let alert = AlertRow {
                            episode_id: transition.episode_id.clone(),
                            device_id: transition.device_id.to_string(),
                            township: township.clone(),
                            rule_id: transition.rule_id.clone(),
                            severity: label(&transition.severity),
                            summary: transition.summary.clone(),
                            fired_at_ms: transition.at_ms,
                            resolved_at_ms: None,
                        };
                        if store.alert_fired(&alert)? {
                            metrics.alert_fired(&transition.rule_id);
                        }
                        if let Action::Order { category, priority } = &transition.action {
                            let order = NewOrder {
                                episode_id: Some(transition.episode_id.clone()),
                                device_id: transition.device_id.to_string(),
                                township,
                                category: category.clone(),
                                priority: label(priority),
                                source: "rule".into(),
                                summary: transition.summary.clone(),
                                created_at_ms: transition.at_ms,
                                actor: format!("rule:{}", transition.rule_id),
                            };
                            if let Some(id) = store.create_order(&order)? {
                                metrics.order_opened();
                                tracing::info!(order = id, device = %transition.device_id, rule = %transition.rule_id, category = %category, "work order opened");
                                opened.push(id);
                            }
                        }
                    }
                    TransitionKind::Resolved => {
                        store.alert_resolved(&transition.episode_id, transition.at_ms)?;
                    }
                }
            }
            Ok(opened)
        })
        .await
    }
}

/// The snake_case name serde gives a unit enum variant (`Severity::Major` -> `major`).
fn label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_owned(),
    }
}
