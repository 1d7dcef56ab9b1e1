//! The service steps of inspection campaigns: [`OrderService::create_campaign`] plans a
//! campaign and opens its inspection orders, [`OrderService::record_inspection`] records a
//! visit; each runs as a sequence of named steps in one store transaction.

use std::collections::{BTreeMap, HashMap};

use super::check::{
    check, check_visit, date_of, day_of, invalid, midnight_of, today, view, visible, Checked,
};
use super::model::{
    checklist, Answer, CampaignConfig, CampaignCreated, CampaignScope, InspectionStatus,
    InspectionView, ItemResult, NewCampaign, Outcome, VisitReport, FINDING_CATEGORY,
    INSPECTION_CATEGORY, INSPECTION_SOURCE, KINDS,
};
use super::plan::{self, Booked, Crew, Unit, Visit};
use crate::auth::{Principal, Role};
use crate::orders::idempotency::{Answered, IdempotencyKey, Once};
use crate::orders::store::{CampaignRow, InspectionRow, NewOrder, OrderUpdate, Store, StoreError};
use crate::orders::{
    dispatch, sla, OrderError, OrderNotice, OrderRow, OrderService, OrderState, RequestError,
};
use crate::prevention::UnitRisk;

/// What the service announces once a step is stored: notices and dispatched orders.
type Announce = (Vec<OrderNotice>, Vec<OrderRow>);

/// What an inspection order is routed by: township, vendor, in warranty.
type RouteKey = (String, String, bool);

/// The inspection orders of a new campaign, in rank order, each with its routing key, and one
/// routing per key (`None`: no team covers it).
struct Opened {
    orders: Vec<(OrderRow, RouteKey)>,
    routes: HashMap<RouteKey, Option<dispatch::Assignment>>,
}

/// What the steps of a new campaign share once the campaign is stored.
struct Planning<'a> {
    checked: &'a Checked,
    campaign_id: i64,
    campaign: &'a CampaignRow,
    /// The units to inspect, riskiest first.
    in_scope: &'a [UnitRisk],
    actor: &'a str,
    now: i64,
}

/// What the steps of a visit's record share.
struct Recording<'a> {
    /// The inspection's id.
    id: i64,
    order: &'a OrderRow,
    campaign: &'a CampaignRow,
    principal: &'a Principal,
    actor: &'a str,
    now: i64,
    /// When the visit is recorded on the order: now, or its last event if that is later.
    at: i64,
    /// `; ` and the visit's note, or nothing.
    note_text: &'a str,
}

impl OrderService {
    /// Plans a campaign over `units` (every registered unit with its risk, highest first, from
    /// `prevention::sweep::assess`): checks the plan, opens one inspection order per unit in
    /// scope (units with an open inspection of another campaign are skipped), routes each by
    /// township, vendor and warranty, gives each a technician and a day ([`plan::plan`]) and
    /// stores the campaign, in one transaction.
    pub async fn create_campaign(
        &self,
        request: NewCampaign,
        units: Vec<UnitRisk>,
        config: &CampaignConfig,
        principal: &Principal,
    ) -> Result<CampaignCreated, RequestError> {
        let now = self.clock.now_ms();
        let checked = check(&request, config, now)?;
        let max_units = config.max_units;
        let actor = principal.actor();
        let service = self.clone();
        let result = self
            .with_store(move |store| {
                Ok(store.batch(|store| {
                    service.create_in(store, checked, units, max_units, &actor, now)
                }))
            })
            .await;
        let (created, (notices, dispatched), no_team) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => {
                if matches!(error, RequestError::Order(OrderError::Store(_))) {
                    self.metrics.campaigns.failed();
                }
                return Err(error);
            }
            Err(error) => {
                self.metrics.campaigns.failed();
                return Err(error.into());
            }
        };
        self.metrics
            .campaigns
            .created(created.planned, created.unscheduled, no_team);
        tracing::info!(campaign = created.campaign.id, name = %created.campaign.name, by = %principal.actor(), in_scope = created.campaign.progress.in_scope, planned = created.planned, unscheduled = created.unscheduled, skipped = created.skipped_total, "inspection campaign planned");
        if created.unscheduled > 0 {
            tracing::warn!(campaign = created.campaign.id, unscheduled = created.unscheduled, no_team, "inspections without a day: the window is too short, a team too small, or a township without a team");
        }
        self.announce(notices, &dispatched);
        Ok(created)
    }

    /// The steps of [`Self::create_campaign`] in its transaction: check the scope's ids, pick
    /// the units, store the campaign, open and route the orders, plan the days, dispatch the
    /// orders and store the inspections.
    fn create_in(
        &self,
        store: &mut Store,
        checked: Checked,
        units: Vec<UnitRisk>,
        max_units: usize,
        actor: &str,
        now: i64,
    ) -> Result<(CampaignCreated, Announce, usize), RequestError> {
        check_registry_ids(store, &checked.scope)?;
        let (skipped, in_scope) = units_to_inspect(store, units, &checked.scope, max_units)?;
        let campaign = campaign_row(&checked, &in_scope, actor, now);
        let campaign_id = store.insert_campaign(&campaign)?;
        let ctx = Planning {
            checked: &checked,
            campaign_id,
            campaign: &campaign,
            in_scope: &in_scope,
            actor,
            now,
        };
        let mut notices = Vec::new();
        let opened = open_orders(store, &ctx, &mut notices)?;
        let crews = crews_of(store, &opened)?;
        let visits = plan_visits(store, &ctx, &opened, &crews)?;
        let (planned, unscheduled, no_team, dispatched) =
            self.dispatch_and_store(store, &ctx, &opened, visits, &mut notices)?;
        let stored = store
            .campaign(campaign_id)?
            .ok_or_else(|| RequestError::invalid("the campaign vanished"))?;
        let inspections = store.inspections_of(campaign_id)?;
        let skipped_total = skipped.len();
        Ok((
            CampaignCreated {
                campaign: view(stored, &inspections),
                planned,
                unscheduled,
                skipped: skipped.into_iter().take(100).map(|u| u.device_id).collect(),
                skipped_total,
            },
            (notices, dispatched),
            no_team,
        ))
    }

    /// Moves each inspection order on (dispatched to its team with its planned day, or a
    /// failed dispatch noted) and stores its inspection. Returns the inspections planned,
    /// unscheduled, without a team, and the orders dispatched.
    fn dispatch_and_store(
        &self,
        store: &mut Store,
        ctx: &Planning,
        opened: &Opened,
        visits: Vec<Option<Visit>>,
        notices: &mut Vec<OrderNotice>,
    ) -> Result<(usize, usize, usize, Vec<OrderRow>), RequestError> {
        let (mut planned, mut unscheduled, mut no_team) = (0, 0, 0);
        let mut dispatched = Vec::new();
        for (rank, ((unit, (row, key)), visit)) in ctx
            .in_scope
            .iter()
            .zip(&opened.orders)
            .zip(visits)
            .enumerate()
        {
            let assignment = opened.routes.get(key).and_then(Option::as_ref);
            match assignment {
                Some(assignment) => {
                    let (stored, notice) = self.dispatch_inspection(
                        store,
                        ctx,
                        row,
                        assignment,
                        visit.as_ref(),
                        rank,
                    )?;
                    notices.push(notice);
                    dispatched.push(stored);
                }
                None => {
                    no_team += 1;
                    note_no_team(store, row, ctx.now)?;
                }
            }
            if visit.is_some() {
                planned += 1;
            } else {
                unscheduled += 1;
            }
            store_inspection(store, ctx, unit, row, assignment, visit, rank)?;
        }
        Ok((planned, unscheduled, no_team, dispatched))
    }

    /// Dispatches an inspection order to the team routing chose, with the technician and the
    /// day of its `visit` (its SLA clocks then run from that day). Returns the stored order
    /// and its notice.
    fn dispatch_inspection(
        &self,
        store: &mut Store,
        ctx: &Planning,
        row: &OrderRow,
        assignment: &dispatch::Assignment,
        visit: Option<&Visit>,
        rank: usize,
    ) -> Result<(OrderRow, OrderNotice), RequestError> {
        let (now, total) = (ctx.now, ctx.in_scope.len());
        let day_note = match visit {
            Some((technician, day)) => format!(
                "; inspection planned on {} for technician {technician} (rank {} of {total})",
                date_of(*day),
                rank + 1
            ),
            None => format!(
                "; no technician of the team has room for it within the window {} to {}: an operator plans its day",
                ctx.campaign.start_date, ctx.campaign.end_date
            ),
        };
        let note = format!("{}{day_note}", assignment.note);
        let update = OrderUpdate {
            state: Some(OrderState::Dispatched),
            team_id: Some(assignment.team.id.clone()),
            technician_id: visit.map(|(t, _)| t.clone()),
            dispatched_at_ms: Some(now),
            ..OrderUpdate::default()
        };
        store.append_event(
            row.id,
            now,
            "dispatcher:campaign",
            "dispatched",
            &note,
            &update,
        )?;
        if let Some((_, day)) = visit {
            // The clocks of an inspection run from its planned day.
            store.restart_sla(row.id, midnight_of(*day).max(now), 0)?;
        }
        self.metrics.order_dispatched();
        let stored = store.order_row(row.id)?.unwrap_or_else(|| row.clone());
        let notice = OrderNotice::of(&stored, "dispatched", now, note);
        Ok((stored, notice))
    }

    /// Records a visit of inspection `id` for `principal` (the team the inspection is assigned
    /// to, its technician, or an operator; the API checks the role): the checklist answers and
    /// the outcome, the inspection order moved on, a repair order opened for a defect, the next
    /// visit planned for a resident not at home. With a `key`, a retry gets the first answer.
    pub async fn record_inspection(
        &self,
        id: i64,
        principal: &Principal,
        report: VisitReport,
        key: Option<IdempotencyKey>,
    ) -> Result<Answered, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let what = format!("inspection {id}: {report:?}");
        let outcome = report.outcome;
        let once = self
            .with_store(move |store| {
                Ok(store.batch(|store| {
                    service.once_in(store, &principal, key.as_ref(), &what, 200, |store| {
                        service.record_in(store, id, &principal, report)
                    })
                }))
            })
            .await;
        let once = match once {
            Ok(Ok(once)) => once,
            Ok(Err(error)) => {
                if matches!(error, RequestError::Order(OrderError::Store(_))) {
                    self.metrics.campaigns.failed();
                }
                return Err(error);
            }
            Err(error) => {
                self.metrics.campaigns.failed();
                return Err(error.into());
            }
        };
        match once {
            Once::Fresh {
                answered,
                extra: (notices, dispatched),
            } => {
                self.metrics.campaigns.outcome(outcome);
                self.announce(notices, &dispatched);
                Ok(answered)
            }
            Once::Replayed(answered) => Ok(answered),
        }
    }

    /// The steps of [`Self::record_inspection`] in its transaction: load the open inspection
    /// the caller may record, check the visit, count it, apply its outcome and store the
    /// inspection.
    fn record_in(
        &self,
        store: &mut Store,
        id: i64,
        principal: &Principal,
        report: VisitReport,
    ) -> Result<(InspectionView, Announce), RequestError> {
        let missing = || RequestError::Missing(format!("no inspection {id}"));
        let (mut inspection, order) = open_inspection(store, id, principal)?;
        check_visit(&inspection.kind, &report)?;
        let campaign = store
            .campaign(inspection.campaign_id)?
            .ok_or_else(missing)?;
        let actor = principal.actor();
        let now = self.clock.now_ms();
        let at = store
            .last_event_ms(order.id)?
            .map_or(now, |last| now.max(last));
        let mut announce: Announce = (Vec::new(), Vec::new());
        let note_text = if report.note.trim().is_empty() {
            String::new()
        } else {
            format!("; {}", report.note.trim())
        };
        inspection.tries = inspection.tries.saturating_add(1);
        inspection.updated_at_ms = now;
        inspection.note = report.note.trim().to_owned();
        let visit_day = inspection
            .planned_date
            .as_deref()
            .and_then(day_of)
            .unwrap_or_else(|| today(now));
        let rec = Recording {
            id,
            order: &order,
            campaign: &campaign,
            principal,
            actor: &actor,
            now,
            at,
            note_text: &note_text,
        };
        match report.outcome {
            Outcome::Done | Outcome::Defect => {
                self.record_inspected(store, &rec, &mut inspection, &report, &mut announce)?;
            }
            Outcome::Refused => {
                let note = format!("the resident refused the inspection{note_text}");
                let status = InspectionStatus::Refused;
                close_unvisited(store, &rec, &mut inspection, status, note, &mut announce.0)?;
            }
            Outcome::NotHome if inspection.tries >= campaign.max_tries => {
                let note = format!(
                    "nobody at home on visit {} of {}: the inspection ends without one{note_text}",
                    inspection.tries, campaign.max_tries
                );
                let status = InspectionStatus::NotHome;
                close_unvisited(store, &rec, &mut inspection, status, note, &mut announce.0)?;
            }
            Outcome::NotHome => {
                self.plan_next_visit(store, &rec, &mut inspection, visit_day, &mut announce.0)?;
            }
        }
        store.update_inspection(&inspection)?;
        tracing::info!(inspection = id, campaign = campaign.id, order = order.id, device = %inspection.device_id, outcome = report.outcome.as_str(), tries = inspection.tries, status = inspection.status.as_str(), by = %actor, "inspection visit recorded");
        Ok((InspectionView::from(inspection), announce))
    }

    /// A visit `done` or with a `defect`: the inspection order is closed with the answers, the
    /// inspection completed; a defect opens its repair ([`Self::open_finding`]).
    fn record_inspected(
        &self,
        store: &mut Store,
        rec: &Recording,
        inspection: &mut InspectionRow,
        report: &VisitReport,
        announce: &mut Announce,
    ) -> Result<(), RequestError> {
        let (order, at) = (rec.order, rec.at);
        let mut update = OrderUpdate {
            state: Some(OrderState::Closed),
            resolved_at_ms: Some(at),
            closed_at_ms: Some(at),
            ..OrderUpdate::default()
        };
        if order.accepted_at_ms.is_none() {
            update.accepted_at_ms = Some(at);
        }
        if order.on_site_at_ms.is_none() {
            update.on_site_at_ms = Some(at);
        }
        if order.technician_id.is_none() {
            update.technician_id = rec.principal.technician.clone();
        }
        let note = format!(
            "inspection {} (visit {}): {}{}",
            report.outcome.as_str(),
            inspection.tries,
            answers_text(&report.answers).join(", "),
            rec.note_text
        );
        store.append_event(order.id, at, rec.actor, "inspected", &note, &update)?;
        inspection.status = if report.outcome == Outcome::Done {
            InspectionStatus::Done
        } else {
            InspectionStatus::Defect
        };
        inspection.answers = report.answers.clone();
        inspection.completed_at_ms = Some(at);
        let row = store.order_row(order.id)?.unwrap_or_else(|| order.clone());
        announce
            .0
            .push(OrderNotice::of(&row, "inspected", at, note));
        if report.outcome == Outcome::Defect {
            self.open_finding(store, rec, inspection, report, announce)?;
        }
        Ok(())
    }

    /// A defect's repair: a [`FINDING_CATEGORY`] order listing the faults, linked both ways
    /// with the inspection order, dispatched as usual.
    fn open_finding(
        &self,
        store: &mut Store,
        rec: &Recording,
        inspection: &mut InspectionRow,
        report: &VisitReport,
        announce: &mut Announce,
    ) -> Result<(), RequestError> {
        let (order, campaign, actor, at) = (rec.order, rec.campaign, rec.actor, rec.at);
        let faults = finding_faults(&inspection.kind, &report.answers);
        let priority = report.repair_priority.as_deref().unwrap_or("normal");
        let summary = format!(
            "inspection finding (campaign {}, inspection order {}): {}{}",
            campaign.id,
            order.id,
            faults.join("; "),
            rec.note_text
        );
        let new = self.new_order(
            store,
            &inspection.device_id,
            &inspection.township,
            FINDING_CATEGORY,
            priority,
            INSPECTION_SOURCE,
            &summary,
            at,
            actor,
            true,
            None,
        )?;
        let repair = store
            .create_order(&new)?
            .ok_or_else(|| RequestError::invalid("the repair order could not be created"))?;
        store.append_event(
            order.id,
            at,
            actor,
            "finding_opened",
            &format!("repair order {repair} opened for the finding"),
            &OrderUpdate::default(),
        )?;
        store.append_event(
            repair,
            at,
            actor,
            "inspection_linked",
            &format!(
                "found by inspection order {} of campaign {} ({})",
                order.id, campaign.id, campaign.name
            ),
            &OrderUpdate::default(),
        )?;
        inspection.repair_order_id = Some(repair);
        if let Some(row) = store.order_row(repair)? {
            announce
                .0
                .push(OrderNotice::of(&row, "created", at, row.summary.clone()));
        }
        if let Some((row, notice)) = self.auto_dispatch(store, repair, at)? {
            announce.0.push(notice);
            announce.1.push(row);
        }
        self.metrics.campaigns.finding();
        tracing::info!(inspection = rec.id, order = order.id, repair, device = %inspection.device_id, priority, "inspection finding: repair order opened");
        Ok(())
    }

    /// Nobody at home, with visits left: the next visit on the technician's first later day
    /// with room (or unscheduled, for an operator), the order back to dispatched.
    fn plan_next_visit(
        &self,
        store: &mut Store,
        rec: &Recording,
        inspection: &mut InspectionRow,
        visit_day: i64,
        notices: &mut Vec<OrderNotice>,
    ) -> Result<(), RequestError> {
        let (order, campaign, at) = (rec.order, rec.campaign, rec.at);
        let next = next_visit_day(store, rec, inspection, visit_day)?;
        let note_text = rec.note_text;
        let note = match next {
            Some(day) => format!(
                "nobody at home (visit {} of {}): next visit planned on {}{note_text}",
                inspection.tries,
                campaign.max_tries,
                date_of(day)
            ),
            None => format!(
                "nobody at home (visit {} of {}): no later day has room for the technician; an operator plans the next visit{note_text}",
                inspection.tries, campaign.max_tries
            ),
        };
        // Back to dispatched for the next visit (the stage times of this one go).
        let back = matches!(order.state, OrderState::Accepted | OrderState::OnSite);
        let update = OrderUpdate {
            state: back.then_some(OrderState::Dispatched),
            reopen: back,
            ..OrderUpdate::default()
        };
        store.append_event(order.id, at, rec.actor, "not_home", &note, &update)?;
        match next {
            Some(day) => {
                inspection.status = InspectionStatus::Planned;
                inspection.planned_date = Some(date_of(day));
                let clear = sla::Stage::ALL
                    .into_iter()
                    .filter(|s| *s != sla::Stage::Dispatch)
                    .fold(0, |bits, s| bits | s.warned_bit() | s.breached_bit());
                store.restart_sla(order.id, midnight_of(day).max(at), clear)?;
            }
            None => inspection.status = InspectionStatus::Unscheduled,
        }
        self.metrics.campaigns.retry(next.is_some());
        let row = store.order_row(order.id)?.unwrap_or_else(|| order.clone());
        notices.push(OrderNotice::of(&row, "not_home", at, note));
        Ok(())
    }
}

/// Every township, village and vendor the scope names is in the registry.
fn check_registry_ids(store: &Store, scope: &CampaignScope) -> Result<(), RequestError> {
    let townships: Vec<String> = store.townships()?.into_iter().map(|t| t.id).collect();
    if let Some(bad) = scope.townships.iter().find(|t| !townships.contains(t)) {
        return Err(invalid(
            "scope",
            format!("townships: {bad:?} is not a township of the registry"),
        ));
    }
    if !scope.villages.is_empty() {
        let villages: Vec<String> = store.villages(None)?.into_iter().map(|v| v.id).collect();
        if let Some(bad) = scope.villages.iter().find(|v| !villages.contains(v)) {
            return Err(invalid(
                "scope",
                format!("villages: {bad:?} is not a village of the registry"),
            ));
        }
    }
    if !scope.vendors.is_empty() {
        let vendors = store.vendor_ids()?;
        if let Some(bad) = scope.vendors.iter().find(|v| !vendors.contains(*v)) {
            return Err(invalid(
                "scope",
                format!("vendors: {bad:?} is not a vendor of the registry"),
            ));
        }
    }
    Ok(())
}

/// The units in `scope`, riskiest first, split into those awaiting another campaign's
/// inspection (skipped) and those to inspect; an error if there are none to inspect or more
/// than `max_units`.
fn units_to_inspect(
    store: &Store,
    units: Vec<UnitRisk>,
    scope: &CampaignScope,
    max_units: usize,
) -> Result<(Vec<UnitRisk>, Vec<UnitRisk>), RequestError> {
    let awaiting = store.devices_awaiting_inspection()?;
    let mut in_scope: Vec<UnitRisk> = units.into_iter().filter(|u| scope.includes(u)).collect();
    in_scope.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    let (skipped, in_scope): (Vec<UnitRisk>, Vec<UnitRisk>) = in_scope
        .into_iter()
        .partition(|u| awaiting.contains(&u.device_id));
    if in_scope.is_empty() {
        return Err(invalid(
            "scope",
            format!(
                "no unit in scope to inspect ({} in scope already await another campaign's inspection)",
                skipped.len()
            ),
        ));
    }
    if in_scope.len() > max_units {
        return Err(invalid(
            "scope",
            format!(
                "{} units in scope; at most {max_units} (campaigns.max_units): narrow the scope",
                in_scope.len()
            ),
        ));
    }
    Ok((skipped, in_scope))
}

/// The campaign to store: the checked plan, with the checklist of each kind in scope.
fn campaign_row(checked: &Checked, in_scope: &[UnitRisk], actor: &str, now: i64) -> CampaignRow {
    let checklists: BTreeMap<String, Vec<String>> = KINDS
        .iter()
        .filter(|k| in_scope.iter().any(|u| u.kind == **k))
        .map(|k| {
            (
                (*k).to_owned(),
                checklist(k).into_iter().map(|i| i.code).collect(),
            )
        })
        .collect();
    CampaignRow {
        id: 0,
        name: checked.name.clone(),
        start_date: date_of(checked.start_day),
        end_date: date_of(checked.end_day),
        scope: checked.scope.clone(),
        per_technician_per_day: checked.per_day,
        max_tries: checked.max_tries,
        checklists,
        created_at_ms: now,
        created_by: actor.to_owned(),
    }
}

/// Opens one inspection order per unit, in rank order, and routes them: one routing per
/// (township, vendor, warranty), asked when the first order of that key is open.
fn open_orders(
    store: &mut Store,
    ctx: &Planning,
    notices: &mut Vec<OrderNotice>,
) -> Result<Opened, RequestError> {
    let now = ctx.now;
    let mut routes: HashMap<RouteKey, Option<dispatch::Assignment>> = HashMap::new();
    let mut orders = Vec::with_capacity(ctx.in_scope.len());
    for (index, unit) in ctx.in_scope.iter().enumerate() {
        let order = inspection_order(ctx, index, unit);
        let id = store
            .create_order(&order)?
            .ok_or_else(|| RequestError::invalid("an inspection order could not be created"))?;
        let row = store
            .order_row(id)?
            .ok_or_else(|| RequestError::invalid("an inspection order vanished"))?;
        notices.push(OrderNotice::of(&row, "created", now, row.summary.clone()));
        let key = (
            unit.township.clone(),
            unit.vendor_id.clone(),
            unit.in_warranty,
        );
        if !routes.contains_key(&key) {
            let assignment = dispatch::route(store, &row)?;
            routes.insert(key.clone(), assignment);
        }
        orders.push((row, key));
    }
    Ok(Opened { orders, routes })
}

/// The inspection order of the unit at `index` (rank `index + 1`): its summary gives the
/// campaign, the risk score and the score's reasons.
fn inspection_order(ctx: &Planning, index: usize, unit: &UnitRisk) -> NewOrder {
    let total = ctx.in_scope.len();
    let reasons: Vec<String> = unit
        .reasons
        .iter()
        .map(|r| format!("{} +{} ({})", r.code, r.weight, r.text))
        .collect();
    let summary = format!(
        "取暖季前巡检 pre-season inspection, campaign {} ({}): risk {} (rank {} of {total}){}{}",
        ctx.campaign_id,
        ctx.checked.name,
        unit.score,
        index + 1,
        if reasons.is_empty() { "" } else { ": " },
        reasons.join("; ")
    );
    NewOrder {
        episode_id: None,
        device_id: unit.device_id.clone(),
        household_id: Some(unit.household_id.clone()),
        village_id: Some(unit.village_id.clone()),
        vendor_id: Some(unit.vendor_id.clone()),
        township: unit.township.clone(),
        category: INSPECTION_CATEGORY.to_owned(),
        priority: "low".to_owned(),
        source: INSPECTION_SOURCE.to_owned(),
        summary,
        created_at_ms: ctx.now,
        actor: ctx.actor.to_owned(),
        pre_emptive: true,
        in_warranty: Some(unit.in_warranty),
    }
}

/// The crews of the teams routing chose: each team's technicians with their home village
/// and its township.
fn crews_of(store: &Store, opened: &Opened) -> Result<BTreeMap<String, Vec<Crew>>, RequestError> {
    let mut crews: BTreeMap<String, Vec<Crew>> = BTreeMap::new();
    let mut township_of: HashMap<String, Option<String>> = HashMap::new();
    for assignment in opened.routes.values().flatten() {
        if crews.contains_key(&assignment.team.id) {
            continue;
        }
        let mut members = Vec::new();
        for (technician, _) in store.technician_loads(&assignment.team.id)? {
            let home_township = match &technician.home_village_id {
                Some(village) => {
                    if !township_of.contains_key(village) {
                        let township = store.township_of_village(village)?;
                        township_of.insert(village.clone(), township);
                    }
                    township_of.get(village).cloned().flatten()
                }
                None => None,
            };
            members.push(Crew {
                technician_id: technician.id,
                home_village: technician.home_village_id,
                home_township,
            });
        }
        crews.insert(assignment.team.id.clone(), members);
    }
    Ok(crews)
}

/// The day plan of the campaign's units ([`plan::plan`]) from today or its first day, over
/// the visits already booked.
fn plan_visits(
    store: &Store,
    ctx: &Planning,
    opened: &Opened,
    crews: &BTreeMap<String, Vec<Crew>>,
) -> Result<Vec<Option<Visit>>, RequestError> {
    let checked = ctx.checked;
    let first_day = checked.start_day.max(today(ctx.now));
    let mut booked = booked_from(store, first_day)?;
    let plan_units: Vec<Unit> = ctx
        .in_scope
        .iter()
        .zip(&opened.orders)
        .map(|(unit, (_, key))| Unit {
            team_id: opened
                .routes
                .get(key)
                .and_then(|a| a.as_ref().map(|a| a.team.id.clone())),
            village_id: unit.village_id.clone(),
            township: unit.township.clone(),
        })
        .collect();
    Ok(plan::plan(
        &plan_units,
        crews,
        &mut booked,
        first_day,
        checked.end_day,
        checked.per_day,
    ))
}

/// The visits booked per (technician, day number) from `from_day` on.
fn booked_from(store: &Store, from_day: i64) -> Result<Booked, StoreError> {
    Ok(store
        .booked_visits(&date_of(from_day))?
        .into_iter()
        .filter_map(|((technician, date), count)| Some(((technician, day_of(&date)?), count)))
        .collect())
}

/// No team covers an inspection order: noted on it for an operator to dispatch.
fn note_no_team(store: &mut Store, row: &OrderRow, now: i64) -> Result<(), RequestError> {
    let note = format!(
        "no team found for device {} in township {}: an operator must dispatch it",
        row.device_id, row.township
    );
    store.append_event(
        row.id,
        now,
        "dispatcher:campaign",
        "dispatch_failed",
        &note,
        &OrderUpdate::default(),
    )?;
    Ok(())
}

/// Stores the inspection of `unit` (rank `rank + 1`): planned with its visit, or
/// unscheduled.
fn store_inspection(
    store: &mut Store,
    ctx: &Planning,
    unit: &UnitRisk,
    row: &OrderRow,
    assignment: Option<&dispatch::Assignment>,
    visit: Option<Visit>,
    rank: usize,
) -> Result<(), RequestError> {
    let status = if visit.is_some() {
        InspectionStatus::Planned
    } else {
        InspectionStatus::Unscheduled
    };
    let (technician_id, planned_date) = match visit {
        Some((technician, day)) => (Some(technician), Some(date_of(day))),
        None => (None, None),
    };
    store.insert_inspection(&InspectionRow {
        id: 0,
        campaign_id: ctx.campaign_id,
        order_id: row.id,
        device_id: unit.device_id.clone(),
        household_id: unit.household_id.clone(),
        village_id: unit.village_id.clone(),
        township: unit.township.clone(),
        vendor_id: unit.vendor_id.clone(),
        kind: unit.kind.clone(),
        in_warranty: unit.in_warranty,
        score: unit.score,
        reasons: unit.reasons.clone(),
        rank: u32::try_from(rank + 1).unwrap_or(u32::MAX),
        team_id: assignment.map(|a| a.team.id.clone()),
        technician_id,
        planned_date,
        tries: 0,
        status,
        answers: Vec::new(),
        note: String::new(),
        repair_order_id: None,
        completed_at_ms: None,
        updated_at_ms: ctx.now,
    })?;
    Ok(())
}

/// Inspection `id` and its order, for `principal` to record a visit: missing if the caller
/// may not record it, a conflict if it or its order is no longer open.
fn open_inspection(
    store: &Store,
    id: i64,
    principal: &Principal,
) -> Result<(InspectionRow, OrderRow), RequestError> {
    let missing = || RequestError::Missing(format!("no inspection {id}"));
    let inspection = store.inspection(id)?.ok_or_else(missing)?;
    let order = store.order_row(inspection.order_id)?.ok_or_else(missing)?;
    let allowed = principal.role == Role::Operator
        || (principal.role == Role::Team
            && (visible(principal, &inspection) || principal.can_read(&order)));
    if !allowed {
        // Another team's inspection does not exist for the caller.
        return Err(missing());
    }
    if !inspection.status.is_open() {
        return Err(RequestError::Conflict(format!(
            "inspection {id} is already recorded: {}",
            inspection.status.as_str()
        )));
    }
    if !order.state.is_open() {
        return Err(RequestError::Conflict(format!(
            "inspection {id}: its order {} is {} (moved by the order steps); record visits only on an open inspection order",
            order.id,
            order.state.as_str()
        )));
    }
    Ok((inspection, order))
}

/// Each answer as the order's history shows it: `item ok|FAULT|n/a [value] [(note)]`.
fn answers_text(answers: &[Answer]) -> Vec<String> {
    answers
        .iter()
        .map(|a| {
            let result = match a.result {
                ItemResult::Ok => "ok",
                ItemResult::Fault => "FAULT",
                ItemResult::NotApplicable => "n/a",
            };
            let value = a.value.map_or_else(String::new, |v| format!(" {v}"));
            let note = a
                .note
                .as_deref()
                .filter(|n| !n.is_empty())
                .map_or_else(String::new, |n| format!(" ({n})"));
            format!("{} {result}{value}{note}", a.item)
        })
        .collect()
}

/// The faults of a defect, for its repair's summary: each item's English label (or its code),
/// with its note.
fn finding_faults(kind: &str, answers: &[Answer]) -> Vec<String> {
    answers
        .iter()
        .filter(|a| a.result == ItemResult::Fault)
        .map(|a| {
            let label = checklist(kind)
                .into_iter()
                .find(|i| i.code == a.item)
                .map_or_else(|| a.item.clone(), |i| i.en);
            match a.note.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => format!("{label}: {n}"),
                None => label,
            }
        })
        .collect()
}

/// The day of the next visit after nobody was at home on `visit_day`: the technician's first
/// later day with room, at most a grace period after the campaign ([`plan::retry_day`]);
/// `None` without a technician or a day.
fn next_visit_day(
    store: &Store,
    rec: &Recording,
    inspection: &InspectionRow,
    visit_day: i64,
) -> Result<Option<i64>, RequestError> {
    let (campaign, now) = (rec.campaign, rec.now);
    let end_day = day_of(&campaign.end_date).unwrap_or(visit_day);
    let next = match &inspection.technician_id {
        Some(technician) => {
            let mut booked = booked_from(store, today(now))?;
            plan::retry_day(
                &mut booked,
                technician,
                visit_day,
                today(now),
                end_day,
                campaign.per_technician_per_day,
            )
        }
        None => None,
    };
    Ok(next)
}

/// A visit that inspected nothing and ends the inspection (`refused`, or nobody at home on
/// the last allowed visit): the order is cancelled with `note`, the inspection completed with
/// `status`.
fn close_unvisited(
    store: &mut Store,
    rec: &Recording,
    inspection: &mut InspectionRow,
    status: InspectionStatus,
    note: String,
    notices: &mut Vec<OrderNotice>,
) -> Result<(), RequestError> {
    let (order, at) = (rec.order, rec.at);
    let update = OrderUpdate {
        state: Some(OrderState::Cancelled),
        closed_at_ms: Some(at),
        ..OrderUpdate::default()
    };
    store.append_event(order.id, at, rec.actor, "cancelled", &note, &update)?;
    inspection.status = status;
    inspection.completed_at_ms = Some(at);
    let row = store.order_row(order.id)?.unwrap_or_else(|| order.clone());
    notices.push(OrderNotice::of(&row, "cancelled", at, note));
    Ok(())
}
