//! Requests as the intake desk logs them (诉求, 统一接待): every call or visit of every channel,
//! of every kind the scheme counts ([`RequestKind`]: repair, policy, charge, conversion, a
//! complaint about the service, other), with the channel's ticket number (the 12345 工单号)
//! and the caller, registered or not. [`OrderService::take_request`] applies each kind's
//! response rule: a repair joins the household's open order or opens one with the SLA clocks
//! (through the complaint intake); any other kind joins the household's open order when there
//! is one and is answered, which is its response. Scope, fields and time are checked in the
//! transaction that writes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::idempotency::{Answered, IdempotencyKey, Once};
use super::intake::outside;
use super::store::{DeviceContext, RequestRow};
use super::*;
use crate::registry::people::{normalise_phone, HouseholdView, MAX_NAME_CHARS};

/// Longest request text or answer, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest external ticket number.
pub const MAX_TICKET_CHARS: usize = 40;
/// Longest id a request may name (household, device, village).
const MAX_ID_CHARS: usize = 100;

/// What a caller wants. Each kind has the seed's response rule (延庆区农村地区冬季清洁取暖长效管护
/// 方案): repair requests are dispatched within 10 minutes, on site within 2 hours and repaired
/// within 4 (response 100 %, resolution 100 %, satisfaction ≥ 90 %); policy, charge and
/// conversion requests are answered, 100 % of them; a complaint about the service is
/// answered and the township that owns 12345 follow-up sees it (first contact must satisfy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// The heating does not work: an order with the 10 min / 2 h / 4 h clocks.
    Repair,
    /// A question about the subsidy or the scheme's policy: answered (100 %).
    Policy,
    /// A question about a charge or a bill: answered (100 %).
    Charge,
    /// "Please convert my village" (尽快实施煤改电): answered (100 %).
    Conversion,
    /// A complaint about a technician, a team or the service: answered (100 %).
    ServiceComplaint,
    /// Anything else: recorded and answered.
    Other,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Repair => "repair",
            RequestKind::Policy => "policy",
            RequestKind::Charge => "charge",
            RequestKind::Conversion => "conversion",
            RequestKind::ServiceComplaint => "service_complaint",
            RequestKind::Other => "other",
        }
    }

    /// Every kind, in the order the desk lists them.
    pub const ALL: [RequestKind; 6] = [
        RequestKind::Repair,
        RequestKind::Policy,
        RequestKind::Charge,
        RequestKind::Conversion,
        RequestKind::ServiceComplaint,
        RequestKind::Other,
    ];

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<RequestKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A request as the desk sends it. Name the household (or one of its devices) for a
/// registered caller; for a caller without a registered device give `caller_name`,
/// `caller_phone` and `village_id` instead.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntakeRequest {
    pub kind: RequestKind,
    pub channel: Channel,
    /// The channel's ticket number (the 12345 工单号), 1 to 40 of `A-Z a-z 0-9 - _ /`; one
    /// request per channel and ticket.
    #[serde(default)]
    pub ticket: Option<String>,
    /// The caller's household, when registered.
    #[serde(default)]
    pub household_id: Option<String>,
    /// The device the call is about, when registered (its household is the caller's).
    #[serde(default)]
    pub device_id: Option<String>,
    /// Who called; defaults to the household's resident.
    #[serde(default)]
    pub caller_name: Option<String>,
    /// The number to ring back (a mobile or a landline); defaults to the household's first.
    #[serde(default)]
    pub caller_phone: Option<String>,
    /// The caller's village; required without a household, else it must be the household's.
    #[serde(default)]
    pub village_id: Option<String>,
    /// What the caller said (at most 2000 characters).
    #[serde(default)]
    pub text: String,
    /// The answer given on the call (at most 2000 characters): the request is then answered.
    #[serde(default)]
    pub answer: Option<String>,
    /// When the call came in (Unix ms); only an operator may set it, within [server now - 24 h,
    /// server now + 60 s]. Omitted: the server's clock.
    #[serde(default)]
    pub received_at_ms: Option<i64>,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IntakeOutcome {
    pub request_id: i64,
    pub kind: RequestKind,
    pub ticket: Option<String>,
    /// The order the request opened or joined (none for a question without an open order).
    pub order_id: Option<i64>,
    /// The request joined an order that was already open.
    pub linked: bool,
    /// That order was opened before anyone called (未诉先办).
    pub pre_emptive: bool,
    /// The caller was answered on the call.
    pub answered: bool,
}

/// `value` trimmed, refused (naming `field`) when longer than `max` characters.
fn bounded(field: &str, value: &str, max: usize) -> Result<String, RequestError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(RequestError::invalid(format!(
            "{field}: at most {max} characters, got {}",
            value.chars().count()
        )));
    }
    Ok(value.to_owned())
}

/// An optional text: trimmed, empty as none, bounded.
fn optional(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, RequestError> {
    match value {
        Some(value) => Ok(Some(bounded(field, value, max)?).filter(|v| !v.is_empty())),
        None => Ok(None),
    }
}

/// A ticket number: 1 to 40 of `A-Z a-z 0-9 - _ /`.
fn ticket(value: Option<&str>) -> Result<Option<String>, RequestError> {
    let Some(value) = optional("ticket", value, MAX_TICKET_CHARS)? else {
        return Ok(None);
    };
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
    {
        return Err(RequestError::invalid(format!(
            "ticket {value:?}: only A-Z a-z 0-9 - _ / (the channel's ticket number as printed, e.g. 12345 工单号 2026120700123)"
        )));
    }
    Ok(Some(value))
}

/// A request's own fields as checked: its time placed, its texts trimmed and bounded.
struct Fields {
    at_ms: i64,
    text: String,
    answer: Option<String>,
    ticket: Option<String>,
    household_id: Option<String>,
    device_id: Option<String>,
    village_id: Option<String>,
}

/// Where a caller lives, as the registry has it.
struct Place {
    /// The device named, when one was.
    context: Option<DeviceContext>,
    /// The household named, or the device's.
    household: Option<HouseholdView>,
    village_id: String,
    township: String,
}

/// A request as logged: what its kind's response rule works from.
struct Logged {
    id: i64,
    kind: RequestKind,
    channel: Channel,
    /// The time the request asked for (the complaint intake checks it again).
    received_at_ms: Option<i64>,
    at_ms: i64,
    ticket: Option<String>,
    text: String,
    answer: Option<String>,
    household_id: Option<String>,
    device_id: Option<String>,
    village_id: String,
    township: String,
    /// The kind, channel, ticket and text in one line, for events and orders.
    said: String,
}

/// Where the caller lives: the household named (or the device's), else a village; each in
/// the principal's scope, and a device, household and village that name one another agree.
fn resolve_place(
    store: &Store,
    principal: &Principal,
    fields: &Fields,
) -> Result<Place, RequestError> {
    let context = match &fields.device_id {
        Some(device) => Some(store.device_context(device)?.ok_or_else(|| {
            RequestError::invalid(format!(
                "device_id {device:?} is not in the registry; name the household_id, or for a caller without a registered device give caller_name, caller_phone and village_id"
            ))
        })?),
        None => None,
    };
    let household: Option<HouseholdView> = match (&fields.household_id, &context) {
        (Some(id), _) => Some(store.household_view(id)?.ok_or_else(|| {
            RequestError::invalid(format!(
                "household_id {id:?} is not in the registry; for a caller without a registered household give caller_name, caller_phone and village_id"
            ))
        })?),
        (None, Some(context)) => store.household_view(&context.household.id)?,
        (None, None) => None,
    };
    if let Some(household) = &household {
        if !principal.can_read_township(&household.township_id) {
            return Err(match &fields.household_id {
                Some(id) => outside("household_id", id),
                None => outside("device_id", fields.device_id.as_deref().unwrap_or_default()),
            });
        }
    }
    if let (Some(context), Some(household)) = (&context, &household) {
        if context.household.id != household.id {
            return Err(RequestError::invalid(format!(
                "device_id {:?} belongs to household {:?}, not to household_id {:?}",
                context.device.id, context.household.id, household.id
            )));
        }
    }
    let (village_id, township) = match &household {
        Some(household) => {
            if let Some(asked) = fields
                .village_id
                .as_ref()
                .filter(|v| **v != household.village_id)
            {
                return Err(RequestError::invalid(format!(
                    "village_id {asked:?} is not the village of household {:?} ({:?}); leave it out",
                    household.id, household.village_id
                )));
            }
            (household.village_id.clone(), household.township_id.clone())
        }
        None => village_place(store, principal, fields.village_id.clone())?,
    };
    Ok(Place {
        context,
        household,
        village_id,
        township,
    })
}

/// The village (and its township) of a caller without a registered household.
fn village_place(
    store: &Store,
    principal: &Principal,
    village_id: Option<String>,
) -> Result<(String, String), RequestError> {
    let village = village_id.ok_or_else(|| {
        RequestError::invalid(
            "village_id: a caller without household_id or device_id needs village_id, caller_name and caller_phone",
        )
    })?;
    let township = store.township_of_village(&village)?.ok_or_else(|| {
        RequestError::invalid(format!("village_id {village:?} is not in the registry"))
    })?;
    if !principal.can_read_township(&township) {
        return Err(outside("village_id", &village));
    }
    Ok((village, township))
}

/// Who called and the number to ring back: as given, else the household's resident and
/// first phone.
fn caller_contact(
    request: &IntakeRequest,
    household: Option<&HouseholdView>,
) -> Result<(String, String), RequestError> {
    let caller_name = match optional(
        "caller_name",
        request.caller_name.as_deref(),
        MAX_NAME_CHARS,
    )? {
        Some(name) => name,
        None => household.map(|h| h.resident.clone()).ok_or_else(|| {
            RequestError::invalid(
                "caller_name: a caller without a registered household needs a name",
            )
        })?,
    };
    let caller_phone = match optional("caller_phone", request.caller_phone.as_deref(), 40)? {
        Some(phone) => normalise_phone(&phone)
            .map_err(|e| RequestError::invalid(format!("caller_phone: {e}")))?,
        None => household
            .and_then(|h| h.phones.first().cloned())
            .ok_or_else(|| {
                RequestError::invalid(
                    "caller_phone: a caller without a registered phone needs a number to ring back",
                )
            })?,
    };
    Ok((caller_name, caller_phone))
}

/// Writes the request (one per channel and ticket), with the caller's contact and the device
/// the call is about (the one named, else the household's).
fn log_request(
    store: &mut Store,
    principal: &Principal,
    request: &IntakeRequest,
    fields: Fields,
    place: Place,
) -> Result<Logged, RequestError> {
    let (caller_name, caller_phone) = caller_contact(request, place.household.as_ref())?;
    let channel = request.channel.as_str();
    if let Some(ticket) = &fields.ticket {
        if let Some(existing) = store.request_by_ticket(channel, ticket)? {
            return Err(RequestError::Conflict(format!(
                "ticket {ticket:?} of channel {channel} is already request {existing}; open it instead of logging the call twice"
            )));
        }
    }
    let household_id = place.household.as_ref().map(|h| h.id.clone());
    let device_id = match (&place.context, &household_id) {
        (Some(context), _) => Some(context.device.id.clone()),
        (None, Some(household)) => store.device_of_household(household)?,
        (None, None) => None,
    };
    let id = store.add_request(&RequestRow {
        id: 0,
        kind: request.kind.as_str().to_owned(),
        channel: channel.to_owned(),
        ticket: fields.ticket.clone(),
        household_id: household_id.clone(),
        device_id: device_id.clone(),
        village_id: Some(place.village_id.clone()),
        township: place.township.clone(),
        caller_name,
        caller_phone,
        text: fields.text.clone(),
        received_at_ms: fields.at_ms,
        taken_by: principal.actor(),
        order_id: None,
        linked: false,
        answer: None,
        answered_at_ms: None,
        answered_by: None,
        masked: false,
    })?;
    let heading = match &fields.ticket {
        Some(ticket) => format!("{} via {channel}, ticket {ticket}", request.kind.as_str()),
        None => format!("{} via {channel}", request.kind.as_str()),
    };
    let said = if fields.text.is_empty() {
        heading
    } else {
        format!("{heading}: {}", fields.text)
    };
    Ok(Logged {
        id,
        kind: request.kind,
        channel: request.channel,
        received_at_ms: request.received_at_ms,
        at_ms: fields.at_ms,
        ticket: fields.ticket,
        text: fields.text,
        answer: fields.answer,
        household_id,
        device_id,
        village_id: place.village_id,
        township: place.township,
        said,
    })
}

impl OrderService {
    /// Logs a request on behalf of `principal` (the roles that may are the API's to check)
    /// and applies its kind's response rule; with a `key`, a retry returns the first answer.
    pub async fn take_request(
        &self,
        principal: &Principal,
        request: IntakeRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<Answered, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let what = format!("request: {request:?}");
        let once = self
            .with_store(move |store| {
                Ok(store.batch(|store| {
                    service.once_in(store, &principal, key.as_ref(), &what, 201, |store| {
                        let (outcome, notices, dispatched) =
                            service.take_request_in(store, &principal, request)?;
                        Ok((outcome, (notices, dispatched)))
                    })
                }))
            })
            .await??;
        Ok(match once {
            Once::Fresh {
                answered,
                extra: (notices, dispatched),
            } => {
                self.announce(notices, &dispatched);
                answered
            }
            Once::Replayed(answered) => answered,
        })
    }

    /// Takes a request in `store`'s transaction: checks its fields, finds where the caller
    /// lives, logs it, applies its kind's response rule, and records the order and the answer.
    #[allow(clippy::type_complexity)]
    fn take_request_in(
        &self,
        store: &mut Store,
        principal: &Principal,
        request: IntakeRequest,
    ) -> Result<(IntakeOutcome, Vec<OrderNotice>, Vec<OrderRow>), RequestError> {
        let now = self.clock.now_ms();
        let fields = self.request_fields(principal, &request, now)?;
        let place = resolve_place(store, principal, &fields)?;
        let logged = log_request(store, principal, &request, fields, place)?;
        let mut notices = Vec::new();
        let mut dispatched = Vec::new();
        let (order_id, linked, pre_emptive) =
            self.respond(store, principal, &logged, &mut notices, &mut dispatched)?;
        if let Some(order) = order_id {
            store.set_request_order(logged.id, order)?;
        }
        let actor = principal.actor();
        if let Some(answer) = &logged.answer {
            store.answer_request(logged.id, answer, now, &actor)?;
        }
        tracing::info!(
            request = logged.id,
            kind = logged.kind.as_str(),
            channel = logged.channel.as_str(),
            ticket = logged.ticket.as_deref().unwrap_or(""),
            township = %logged.township,
            order = ?order_id,
            linked,
            answered = logged.answer.is_some(),
            by = %actor,
            "request taken"
        );
        Ok((
            IntakeOutcome {
                request_id: logged.id,
                kind: logged.kind,
                answered: logged.answer.is_some(),
                ticket: logged.ticket,
                order_id,
                linked,
                pre_emptive,
            },
            notices,
            dispatched,
        ))
    }

    /// The request's own fields, checked: the time it came in (only an operator may date it,
    /// within the complaint window), then each text trimmed and bounded.
    fn request_fields(
        &self,
        principal: &Principal,
        request: &IntakeRequest,
        now: i64,
    ) -> Result<Fields, RequestError> {
        let at_ms = match request.received_at_ms {
            None => now,
            Some(_) if principal.role != Role::Operator => {
                return Err(RequestError::Forbidden(format!(
                    "received_at_ms: a {:?} token may not date a request; omit it and the server's clock is used",
                    principal.role
                )))
            }
            Some(t) => TimeWindow::complaint(now.saturating_add(self.clock_lead_ms))
                .check("received_at_ms", t)
                .map_err(|m| RequestError::out_of_range("received_at_ms", m))?,
        };
        Ok(Fields {
            at_ms,
            text: bounded("text", &request.text, MAX_TEXT_CHARS)?,
            answer: optional("answer", request.answer.as_deref(), MAX_TEXT_CHARS)?,
            ticket: ticket(request.ticket.as_deref())?,
            household_id: optional(
                "household_id",
                request.household_id.as_deref(),
                MAX_ID_CHARS,
            )?,
            device_id: optional("device_id", request.device_id.as_deref(), MAX_ID_CHARS)?,
            village_id: optional("village_id", request.village_id.as_deref(), MAX_ID_CHARS)?,
        })
    }

    /// Applies the request's kind's response rule; returns the order it opened or joined,
    /// whether it joined one, and whether that order was pre-emptive.
    fn respond(
        &self,
        store: &mut Store,
        principal: &Principal,
        logged: &Logged,
        notices: &mut Vec<OrderNotice>,
        dispatched: &mut Vec<OrderRow>,
    ) -> Result<(Option<i64>, bool, bool), RequestError> {
        let open = match &logged.household_id {
            Some(household) => store.open_order_for_household(household)?,
            None => None,
        };
        Ok(match (logged.kind, &logged.device_id, open) {
            // A repair about a registered device: the complaint intake joins the open order or
            // opens one and dispatches it.
            (RequestKind::Repair, Some(device), _) => {
                let (outcome, more, sent) = self.complaint_in(
                    store,
                    principal,
                    ComplaintRequest {
                        channel: logged.channel,
                        device_id: Some(device.clone()),
                        household_id: logged.household_id.clone(),
                        received_at_ms: logged.received_at_ms,
                        text: match (&logged.ticket, logged.text.is_empty()) {
                            (Some(ticket), true) => format!("ticket {ticket}"),
                            (Some(ticket), false) => format!("ticket {ticket}: {}", logged.text),
                            (None, _) => logged.text.clone(),
                        },
                    },
                )?;
                notices.extend(more);
                dispatched.extend(sent);
                (Some(outcome.order_id), outcome.linked, outcome.pre_emptive)
            }
            // Anything about a household with an open order joins it.
            (_, _, Some(order)) => {
                self.join_open_order(store, logged, &order, notices)?;
                (Some(order.id), true, order.pre_emptive)
            }
            // A repair from a caller without a registered device: an order for the caller,
            // routed by the village's township (the third party inspects what is not in the
            // registry).
            (RequestKind::Repair, None, None) => {
                let id = self.open_caller_order(store, logged, notices, dispatched)?;
                (Some(id), false, false)
            }
            // A question without an open order: answered, no order.
            (_, _, None) => (None, false, false),
        })
    }

    /// Joins a request to its household's open order: a repair raises the order's priority
    /// and counts as a complaint on it; any other kind is an event on the order.
    fn join_open_order(
        &self,
        store: &mut Store,
        logged: &Logged,
        order: &OrderRow,
        notices: &mut Vec<OrderNotice>,
    ) -> Result<(), RequestError> {
        let channel = logged.channel.as_str();
        let at_ms = logged.at_ms;
        if logged.kind == RequestKind::Repair {
            self.raise_priority(
                store,
                order,
                "high",
                at_ms,
                &format!("request:{channel}"),
                &format!("a resident's repair request via {channel} joined the order"),
                notices,
            )?;
            store.add_complaint(&ComplaintRow {
                id: 0,
                channel: channel.to_owned(),
                device_id: None,
                household_id: logged.household_id.clone(),
                received_at_ms: at_ms,
                text: logged.said.clone(),
                order_id: order.id,
                linked: true,
            })?;
            self.metrics.complaint(order.pre_emptive);
        } else {
            store.append_event(
                order.id,
                at_ms.max(order.created_at_ms),
                &format!("request:{channel}"),
                "request_linked",
                &format!("request {}, {}", logged.id, logged.said),
                &OrderUpdate::default(),
            )?;
            notices.push(OrderNotice::of(
                order,
                "request_linked",
                at_ms,
                logged.said.clone(),
            ));
        }
        Ok(())
    }

    /// Opens (and dispatches when it can) a repair order for a caller without a registered
    /// device; returns its id.
    fn open_caller_order(
        &self,
        store: &mut Store,
        logged: &Logged,
        notices: &mut Vec<OrderNotice>,
        dispatched: &mut Vec<OrderRow>,
    ) -> Result<i64, RequestError> {
        let channel = logged.channel.as_str();
        let at_ms = logged.at_ms;
        let mut order = self.new_order(
            store,
            &format!("request-{}", logged.id),
            &logged.township,
            "repair",
            "high",
            channel,
            &format!("caller without a registered device; {}", logged.said),
            at_ms,
            &format!("request:{channel}"),
            false,
            None,
        )?;
        order.household_id = logged.household_id.clone();
        order.village_id = Some(logged.village_id.clone());
        self.create_and_dispatch(store, &order, at_ms, notices, dispatched)
    }

    /// Records the answer given to a request's caller (its response), once; with a `key`, a
    /// retry returns the first answer.
    pub async fn answer_request(
        &self,
        principal: &Principal,
        request_id: i64,
        answer: String,
        key: Option<IdempotencyKey>,
    ) -> Result<Answered, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let what = format!("answer request {request_id}: {answer:?}");
        let once = self
            .with_store(move |store| {
                Ok(store.batch(|store| {
                    service.once_in(store, &principal, key.as_ref(), &what, 200, |store| {
                        let answer = bounded("answer", &answer, MAX_TEXT_CHARS)?;
                        if answer.is_empty() {
                            return Err(RequestError::invalid("answer: say what the caller was told"));
                        }
                        let request = store
                            .request(request_id)?
                            .filter(|r| principal.can_read_township(&r.township))
                            .ok_or_else(|| RequestError::Missing(format!("no request {request_id}")))?;
                        if let Some(at) = request.answered_at_ms {
                            return Err(RequestError::Conflict(format!(
                                "request {request_id} was answered at {at} (Unix ms) by {}; its answer stays as given",
                                request.answered_by.as_deref().unwrap_or("?")
                            )));
                        }
                        let actor = principal.actor();
                        let now = service.clock.now_ms();
                        store.answer_request(request_id, &answer, now, &actor)?;
                        tracing::info!(request = request_id, by = %actor, "request answered");
                        let row = store
                            .request(request_id)?
                            .ok_or_else(|| RequestError::Missing(format!("no request {request_id}")))?;
                        Ok((row, ()))
                    })
                }))
            })
            .await??;
        Ok(match once {
            Once::Fresh { answered, .. } | Once::Replayed(answered) => answered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_name() {
        for kind in RequestKind::ALL {
            let json = serde_json::to_value(kind).expect("serializes");
            assert_eq!(json, kind.as_str());
            assert_eq!(RequestKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn tickets_are_plain_and_bounded() {
        assert_eq!(
            ticket(Some(" 2026120700123 ")).expect("valid"),
            Some("2026120700123".to_owned())
        );
        assert_eq!(ticket(Some("")).expect("empty"), None);
        assert!(ticket(Some("12 34")).is_err());
        assert!(ticket(Some(&"1".repeat(41))).is_err());
    }
}
