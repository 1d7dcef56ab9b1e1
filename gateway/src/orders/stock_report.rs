//! The stock figures of a report: the period's orders that met a stock-out at dispatch (a part
//! neither the technician's van nor the township's point had), how long they took from dispatch
//! to repair against the orders that did not, the stock lines low now and the backup heaters
//! lent and overdue now.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use utoipa::ToSchema;

use super::store::{is_not_a_fault, BackupState, BackupUnitRow, StockOut};
use super::OrderRow;

/// Most stock-out orders a report lists one by one.
pub const MAX_LISTED: usize = 200;

/// One order of the period that met a stock-out.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StockOutOrder {
    pub order_id: i64,
    pub township: String,
    /// The parts it lacked, `code xN`.
    pub parts: Vec<String>,
    /// Hours from dispatch to repair; `None` while not repaired.
    pub hours_to_repair: Option<f64>,
}

/// The stock figures of a report, in the caller's scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct StockFigures {
    /// The period's fault orders that met a stock-out at dispatch.
    pub orders_with_stock_out: u64,
    /// Parts they lacked, summed.
    pub parts_short: u64,
    /// Median hours from dispatch to repair of the repaired ones with a stock-out ...
    pub median_hours_to_repair_with_stock_out: Option<f64>,
    /// ... and of the period's other repaired fault orders, for comparison.
    pub median_hours_to_repair_without: Option<f64>,
    /// Stock-outs by township (township, orders).
    pub by_township: BTreeMap<String, u64>,
    /// The stock-out orders, oldest first (at most 200).
    pub orders: Vec<StockOutOrder>,
    /// Stock lines at or below their reorder level now.
    pub low_lines_now: u64,
    /// Backup heaters lent now, and of them past their return date.
    pub loans_out_now: u64,
    pub loans_overdue_now: u64,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

fn hours_to_repair(order: &OrderRow) -> Option<f64> {
    let (Some(dispatched), Some(resolved)) = (order.dispatched_at_ms, order.resolved_at_ms) else {
        return None;
    };
    Some((resolved - dispatched).max(0) as f64 / 3_600_000.0)
}

/// The figures of `orders` (the report's, already in the caller's scope) given the stock-outs
/// recorded for them, the low lines and the backup units in scope now.
pub fn figures(
    orders: &[OrderRow],
    outs: &[StockOut],
    low_lines_now: u64,
    units: &[BackupUnitRow],
    now_ms: i64,
) -> StockFigures {
    let mut lacking: BTreeMap<i64, Vec<&StockOut>> = BTreeMap::new();
    for out in outs {
        lacking.entry(out.order_id).or_default().push(out);
    }
    let faults = orders.iter().filter(|o| !is_not_a_fault(&o.category));
    let mut figures = StockFigures {
        low_lines_now,
        ..StockFigures::default()
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut seen = BTreeSet::new();
    for order in faults {
        let hours = hours_to_repair(order);
        let Some(short) = lacking.get(&order.id) else {
            without.extend(hours);
            continue;
        };
        if !seen.insert(order.id) {
            continue;
        }
        with.extend(hours);
        figures.orders_with_stock_out += 1;
        figures.parts_short += short.iter().map(|o| o.quantity.max(0) as u64).sum::<u64>();
        *figures
            .by_township
            .entry(order.township.clone())
            .or_default() += 1;
        if figures.orders.len() < MAX_LISTED {
            figures.orders.push(StockOutOrder {
                order_id: order.id,
                township: order.township.clone(),
                parts: short
                    .iter()
                    .map(|o| format!("{} x{}", o.part_code, o.quantity))
                    .collect(),
                hours_to_repair: hours,
            });
        }
    }
    figures.median_hours_to_repair_with_stock_out = median(with);
    figures.median_hours_to_repair_without = median(without);
    for unit in units.iter().filter(|u| u.state == BackupState::Lent) {
        figures.loans_out_now += 1;
        if unit.return_by_ms.is_some_and(|by| by < now_ms) {
            figures.loans_overdue_now += 1;
        }
    }
    figures
}

fn hours(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |h| format!("{h:.1} h"))
}

/// The figures as a section of the printable report.
pub fn to_html(figures: &StockFigures, html: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        html,
        "<h2>备件 Parts and backup units</h2><table><tbody>\
         <tr><th>Orders that met a stock-out at dispatch</th><td>{} ({} parts short)</td></tr>\
         <tr><th>Median dispatch to repair, with a stock-out / without</th><td>{} / {}</td></tr>\
         <tr><th>Stock lines low now</th><td>{}</td></tr>\
         <tr><th>Backup heaters lent now / overdue</th><td>{} / {}</td></tr></tbody></table>",
        figures.orders_with_stock_out,
        figures.parts_short,
        hours(figures.median_hours_to_repair_with_stock_out),
        hours(figures.median_hours_to_repair_without),
        figures.low_lines_now,
        figures.loans_out_now,
        figures.loans_overdue_now,
    );
    if figures.orders.is_empty() {
        return;
    }
    html.push_str("<table><thead><tr><th>Order</th><th>Township</th><th>Parts short</th><th>Dispatch to repair</th></tr></thead><tbody>");
    for order in &figures.orders {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            order.order_id,
            super::reports::escape(&order.township),
            super::reports::escape(&order.parts.join(", ")),
            hours(order.hours_to_repair),
        );
    }
    html.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_even_and_odd_counts_and_of_nothing() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
