//! Attribution: each order the gateway opened, in creation order, to the fault it answers
//! (by device and window, a supply incident by the village its group names) or, for a rule
//! order with none, to the cause of the false order; counted per detector.

use std::collections::BTreeMap;

use super::card::{DetectorRow, OrderCounts};
use super::inputs::{FaultTruth, Inputs, OrderView};
use super::tally::share;
use super::CALL_TASK_CATEGORY;
use crate::mix::{FaultClass, TrapKind};

/// The detector of a rule order: its rule id, the part of its episode id before the first ':'
/// (a supply incident's id starts with its fleet rule); `incident` for a supply incident
/// without one, `unknown` for another order without one.
pub(super) fn detector_of(order: &OrderView, on_household: bool) -> String {
    match order
        .episode_id
        .as_deref()
        .and_then(|e| e.split(':').next())
        .filter(|id| !id.is_empty())
    {
        Some(id) => id.to_owned(),
        None if !on_household && is_supply_category(&order.category) => "incident".to_owned(),
        None => "unknown".to_owned(),
    }
}

/// How a supply incident's group id names the village `village` of `township`: 2 for the
/// village (`village:yanqing/yanqing-dongguan`, `yanqing/dongguan`, `yanqing-dongguan`,
/// `dongguan`), 1 for its township alone (`township:yanqing`, `yanqing`), 0 for neither. Names
/// are compared whole: `jiuxian/jiuxian-gucheng` does not name the village `jiuxian` of
/// `jiuxian`.
pub(super) fn group_level(group: &str, township: &str, village: &str) -> u8 {
    let name = group.rsplit_once(':').map_or(group, |(_, name)| name);
    let long = format!("{township}-{village}");
    let (in_township, village_part) = match name.split_once('/') {
        Some((t, v)) => (Some(t), v),
        None => (None, name),
    };
    if in_township.is_some_and(|t| t != township) {
        0
    } else if village_part == village || village_part == long {
        2
    } else if in_township.is_none() && village_part == township {
        1
    } else {
        0
    }
}

pub(super) fn is_supply_category(category: &str) -> bool {
    category == "power_supply" || category == "gas_supply"
}

/// The orders attributed: counts, and per fault its rule orders, incidents and per-device
/// orders.
pub(super) struct Attribution {
    pub(super) orders: OrderCounts,
    /// Per fault: created times and detectors of attributed rule orders, in time order.
    pub(super) fault_orders: Vec<Vec<(i64, String)>>,
    pub(super) detectors: BTreeMap<String, DetectorRow>,
    /// Per fault: supply incidents attributed to it.
    pub(super) incidents: Vec<u64>,
    /// Per fault: rule orders on single devices during it (a supply fault).
    pub(super) per_device: Vec<u64>,
    pub(super) false_orders: Vec<OrderView>,
}

/// True while `at` is inside the fault's attribution window.
fn in_window(fault: &FaultTruth, at: i64) -> bool {
    fault.start_ms <= at && at < fault.window_end_ms
}

/// The orders in creation order (then device, category and id, so ties are stable).
fn sorted_orders(inputs: &Inputs) -> Vec<&OrderView> {
    let mut sorted: Vec<&OrderView> = inputs.orders.iter().collect();
    sorted.sort_by(|a, b| {
        (a.created_at_ms, &a.device_id, &a.category, a.id).cmp(&(
            b.created_at_ms,
            &b.device_id,
            &b.category,
            b.id,
        ))
    });
    sorted
}

/// Attributes every order (see the module docs) and counts them.
pub(super) fn attribute(inputs: &Inputs) -> Attribution {
    let device_index: BTreeMap<&str, usize> = inputs
        .households
        .iter()
        .enumerate()
        .map(|(i, h)| (h.device_id.as_str(), i))
        .collect();
    let orders = OrderCounts {
        total: inputs.orders.len() as u64,
        ..OrderCounts::default()
    };
    let mut attribution = Attribution {
        orders,
        fault_orders: vec![Vec::new(); inputs.faults.len()],
        detectors: BTreeMap::new(),
        incidents: vec![0; inputs.faults.len()],
        per_device: vec![0; inputs.faults.len()],
        false_orders: Vec::new(),
    };
    for order in sorted_orders(inputs) {
        attribution.add(inputs, &device_index, order);
    }
    attribution.finish(inputs);
    attribution
}

impl Attribution {
    /// One order: an intake order is counted by channel; a rule order is attributed to a fault
    /// or found false, and counted for its detector.
    fn add(&mut self, inputs: &Inputs, device_index: &BTreeMap<&str, usize>, order: &OrderView) {
        let orders = &mut self.orders;
        if order.source != "rule" {
            *orders.intake.entry(order.source.clone()).or_default() += 1;
            return;
        }
        orders.rule += 1;
        let detector = detector_of(order, device_index.contains_key(order.device_id.as_str()));
        let call_task = order.category == CALL_TASK_CATEGORY;
        orders.call_tasks += u64::from(call_task);
        *orders
            .by_category
            .entry(order.category.clone())
            .or_default() += 1;
        let household = device_index.get(order.device_id.as_str()).copied();
        let cause = match household {
            None if is_supply_category(&order.category) => {
                self.attribute_incident(inputs, order, &detector)
            }
            None => Some("unknown_device".to_owned()),
            Some(h) => self.attribute_on_household(inputs, order, h, &detector, call_task),
        };
        let row = self
            .detectors
            .entry(detector.clone())
            .or_insert_with(|| DetectorRow {
                rule_id: detector,
                ..DetectorRow::default()
            });
        row.opened += 1;
        row.call_tasks += u64::from(call_task);
        if cause.is_some() {
            row.false_orders += 1;
        } else {
            row.attributed += 1;
        }
        if let Some(cause) = cause {
            self.orders.false_orders += 1;
            *self.orders.false_by_cause.entry(cause).or_default() += 1;
            self.false_orders.push(order.clone());
        }
    }

    /// A supply incident (on a village or township, not a household): the supply fault whose
    /// village the incident's group names; a group naming only the township matches when no
    /// fault names the village itself. Returns the false-order cause when none matches.
    fn attribute_incident(
        &mut self,
        inputs: &Inputs,
        order: &OrderView,
        detector: &str,
    ) -> Option<String> {
        let at = order.created_at_ms;
        let level = |f: &&FaultTruth| {
            f.village.as_ref().map_or(0, |(township, village)| {
                group_level(&order.device_id, township, village)
            })
        };
        let candidates = || {
            inputs
                .faults
                .iter()
                .filter(|f| in_window(f, at))
                .filter(|f| f.kind.is_supply())
        };
        let matched = candidates()
            .find(|f| level(f) == 2)
            .or_else(|| candidates().find(|f| level(f) == 1));
        match matched {
            Some(fault) => {
                self.incidents[fault.id] += 1;
                self.fault_orders[fault.id].push((at, detector.to_owned()));
                self.orders.supply_incidents += 1;
                None
            }
            None => Some("supply_incident_without_supply_fault".to_owned()),
        }
    }

    /// A rule order on household `h`: the first fault of the household in its window (a
    /// supply fault's per-device order, a detection or a duplicate), else the false-order
    /// cause.
    fn attribute_on_household(
        &mut self,
        inputs: &Inputs,
        order: &OrderView,
        h: usize,
        detector: &str,
        call_task: bool,
    ) -> Option<String> {
        let at = order.created_at_ms;
        let fault = inputs
            .faults
            .iter()
            .filter(|f| in_window(f, at))
            .find(|f| f.households.contains(&h));
        let orders = &mut self.orders;
        match fault {
            Some(fault) if fault.kind.is_supply() => {
                self.per_device[fault.id] += 1;
                self.fault_orders[fault.id].push((at, detector.to_owned()));
                orders.per_device_supply_orders += 1;
                None
            }
            Some(fault) => {
                if call_task && fault.kind.class() == FaultClass::Communication {
                    orders.call_tasks_on_communication_faults += 1;
                }
                if self.fault_orders[fault.id].is_empty() {
                    orders.detections += 1;
                } else {
                    orders.duplicates += 1;
                }
                self.fault_orders[fault.id].push((at, detector.to_owned()));
                None
            }
            None => Some(false_cause(inputs, h, at)),
        }
    }

    /// After every order: a supply fault's incidents count as its detection too; shares,
    /// first detections and precision per detector.
    fn finish(&mut self, inputs: &Inputs) {
        let orders = &mut self.orders;
        // A supply fault's incidents count as its detection too.
        for fault in &inputs.faults {
            if fault.kind.is_supply() && self.incidents[fault.id] > 0 {
                orders.detections += 1;
            }
        }
        orders.false_order_share = share(orders.false_orders, orders.rule);
        for orders in &self.fault_orders {
            if let Some((_, detector)) = orders.first() {
                if let Some(row) = self.detectors.get_mut(detector) {
                    row.first_detections += 1;
                }
            }
        }
        for row in self.detectors.values_mut() {
            row.precision = share(row.attributed, row.opened);
        }
    }
}

/// Why a rule order on household `h` with no fault behind it was opened: the trap the house
/// was in, its night set-back, or `no_fault`.
fn false_cause(inputs: &Inputs, h: usize, at: i64) -> String {
    let trap = inputs
        .traps
        .iter()
        .find(|t| t.household == h && t.start_ms <= at && at < t.window_end_ms);
    match trap {
        Some(trap) => trap.kind.as_str().to_owned(),
        None if inputs.households[h].night_setback_k > 0.0
            && crate::model::is_night(at as f64 / 1000.0) =>
        {
            TrapKind::NightSetback.as_str().to_owned()
        }
        None => "no_fault".to_owned(),
    }
}
