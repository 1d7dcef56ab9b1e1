//! Complaints from every intake channel (统一接待): [`OrderService::complaint`] links one to
//! the device's (or household's) open order, the proof of 未诉先办 when that order came from the
//! rules, or opens and dispatches a new order; scope and time are checked in the writing
//! transaction.

use super::*;

/// The intake channels of the scheme (统一接待).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The 12345 citizen hotline (`hotline_12345`, the name orders, reports and the console
    /// use; `hotline12345` is accepted too).
    #[serde(rename = "hotline_12345", alias = "hotline12345")]
    Hotline12345,
    /// The maintenance centre's own hotline.
    CentreHotline,
    /// One-tap report in the app / 和美乡村 platform.
    App,
    /// SMS or WeChat.
    SmsWechat,
    /// In person at a service point.
    WalkIn,
    /// A technician in the field passing on what a resident asked.
    Technician,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Hotline12345 => "hotline_12345",
            Channel::CentreHotline => "centre_hotline",
            Channel::App => "app",
            Channel::SmsWechat => "sms_wechat",
            Channel::WalkIn => "walk_in",
            Channel::Technician => "technician",
        }
    }
}

/// A complaint as it arrives through the API.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplaintRequest {
    pub channel: Channel,
    /// The device complained about; give this or `household_id`.
    #[serde(default)]
    pub device_id: Option<String>,
    /// The household complaining; give this or `device_id`.
    #[serde(default)]
    pub household_id: Option<String>,
    /// When the complaint was received (Unix ms); defaults to the server's clock. Only an
    /// operator may set it, within [server now - 24 h, server now + 60 s] (a call logged late).
    #[serde(default)]
    pub received_at_ms: Option<i64>,
    /// What the resident said.
    #[serde(default)]
    pub text: String,
}

/// What became of a complaint.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ComplaintOutcome {
    pub complaint_id: i64,
    pub order_id: i64,
    /// An order was already open for the device: the complaint was linked to it.
    pub linked: bool,
    /// The order was opened before any complaint (未诉先办).
    pub pre_emptive: bool,
}

impl OrderService {
    /// Takes a complaint on behalf of `principal`: links it to the device's (or household's)
    /// open order, or opens a new order from it and dispatches it. The roles that may file
    /// complaints are the API's to check; this checks, in the transaction that writes, that the
    /// device, the household and the order it would link to are all in the caller's scope, and
    /// the time: the server's clock, unless an operator sets `received_at_ms` within
    /// [`TimeWindow::complaint`].
    pub async fn complaint(
        &self,
        principal: &Principal,
        request: ComplaintRequest,
    ) -> Result<ComplaintOutcome, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let (outcome, notices, dispatched) = self
            .with_store(move |store| {
                Ok(store.batch(|store| service.complaint_in(store, &principal, request)))
            })
            .await??;
        self.announce(notices, &dispatched);
        Ok(outcome)
    }

    /// Takes a complaint in `store`'s transaction: its time, the device and household it is
    /// about (each in scope), then joins it to their open order or opens one, and records it.
    #[allow(clippy::type_complexity)]
    pub(super) fn complaint_in(
        &self,
        store: &mut Store,
        principal: &Principal,
        request: ComplaintRequest,
    ) -> Result<(ComplaintOutcome, Vec<OrderNotice>, Vec<OrderRow>), RequestError> {
        let at_ms = self.complaint_time(principal, request.received_at_ms)?;
        let (device_id, context) = complaint_device(store, principal, &request)?;
        let existing = open_order_in_scope(store, principal, &request, &device_id, &context)?;
        let channel = request.channel.as_str();
        let mut notices = Vec::new();
        let mut dispatched = Vec::new();
        let (order_id, linked, pre_emptive) = match existing {
            Some(order) => {
                // A resident asking for a repair makes the open order a repair (a maintenance
                // finding gets the repair clocks from now).
                self.raise_priority(
                    store,
                    &order,
                    "high",
                    at_ms,
                    &format!("complaint:{channel}"),
                    &format!("a resident's repair request via {channel} joined the order"),
                    &mut notices,
                )?;
                (order.id, true, order.pre_emptive)
            }
            None => {
                let (id, opened, sent) = self.open_complaint_order(
                    store,
                    &request,
                    &device_id,
                    context.as_ref(),
                    at_ms,
                )?;
                notices.extend(opened);
                dispatched.extend(sent);
                (id, false, false)
            }
        };
        let complaint_id = store.add_complaint(&ComplaintRow {
            id: 0,
            channel: channel.to_owned(),
            device_id: Some(device_id.clone()),
            household_id: request.household_id.clone(),
            received_at_ms: at_ms,
            text: request.text.clone(),
            order_id,
            linked,
        })?;
        self.metrics.complaint(linked && pre_emptive);
        tracing::info!(complaint = complaint_id, order = order_id, device = %device_id, channel, linked, pre_emptive, by = %principal.actor(), "complaint taken");
        Ok((
            ComplaintOutcome {
                complaint_id,
                order_id,
                linked,
                pre_emptive,
            },
            notices,
            dispatched,
        ))
    }

    /// Opens (and dispatches when a team fits) a repair order from a complaint about a
    /// registered device; returns its id, its notices and the dispatched order.
    #[allow(clippy::type_complexity)]
    fn open_complaint_order(
        &self,
        store: &mut Store,
        request: &ComplaintRequest,
        device_id: &str,
        context: Option<&store::DeviceContext>,
        at_ms: i64,
    ) -> Result<(i64, Vec<OrderNotice>, Vec<OrderRow>), RequestError> {
        let Some(context) = context else {
            return Err(RequestError::invalid(format!(
                "device_id {device_id:?} is not in the registry; import it first"
            )));
        };
        let channel = request.channel.as_str();
        let summary = if request.text.is_empty() {
            format!("complaint via {channel}")
        } else {
            format!("complaint via {channel}: {}", request.text)
        };
        let order = self.new_order(
            store,
            device_id,
            &context.village.township_id,
            "repair",
            "high",
            channel,
            &summary,
            at_ms,
            &format!("complaint:{channel}"),
            false,
            None,
        )?;
        let mut notices = Vec::new();
        let mut dispatched = Vec::new();
        let id = self.create_and_dispatch(store, &order, at_ms, &mut notices, &mut dispatched)?;
        Ok((id, notices, dispatched))
    }

    /// When a complaint came in: the server's clock, unless an operator dates it within
    /// [`TimeWindow::complaint`].
    fn complaint_time(
        &self,
        principal: &Principal,
        received_at_ms: Option<i64>,
    ) -> Result<i64, RequestError> {
        let now = self.clock.now_ms();
        Ok(match received_at_ms {
            None => now,
            Some(_) if principal.role != Role::Operator => {
                return Err(RequestError::Forbidden(format!(
                    "received_at_ms: a {:?} token may not date a complaint; omit it and the \
                     server's clock is used (only an operator may set it, from server now - 24 h \
                     to server now + 60 s)",
                    principal.role
                )))
            }
            Some(t) => TimeWindow::complaint(now.saturating_add(self.clock_lead_ms))
                .check("received_at_ms", t)
                .map_err(|m| RequestError::out_of_range("received_at_ms", m))?,
        })
    }

    /// Creates `order`, counts it, announces it and dispatches it when a team fits; returns
    /// its id.
    pub(super) fn create_and_dispatch(
        &self,
        store: &mut Store,
        order: &NewOrder,
        at_ms: i64,
        notices: &mut Vec<OrderNotice>,
        dispatched: &mut Vec<OrderRow>,
    ) -> Result<i64, RequestError> {
        let id = store
            .create_order(order)?
            .ok_or_else(|| RequestError::invalid("the order could not be created"))?;
        self.metrics.order_opened();
        if let Some(row) = store.order_row(id)? {
            notices.push(OrderNotice::of(&row, "created", at_ms, row.summary.clone()));
        }
        if let Some((row, notice)) = self.auto_dispatch(store, id, at_ms)? {
            notices.push(notice);
            dispatched.push(row);
        }
        Ok(id)
    }
}

/// A request naming `field` = `value` outside the principal's township.
pub(super) fn outside(field: &str, value: &str) -> RequestError {
    RequestError::Forbidden(format!("{field} {value:?} is outside the token's township"))
}

/// The device a complaint is about (the one named, else the household's) and where it sits in
/// the registry. Scope first, for everything the request names, before anything else is said
/// about it; a device and a household named together must agree (the household decides which
/// open order the complaint joins, the device what a new order is about).
fn complaint_device(
    store: &Store,
    principal: &Principal,
    request: &ComplaintRequest,
) -> Result<(String, Option<store::DeviceContext>), RequestError> {
    if let Some(household) = &request.household_id {
        if let Some(township) = store.township_of_household(household)? {
            if !principal.can_read_township(&township) {
                return Err(outside("household_id", household));
            }
        }
    }
    let (device_id, context) = match (&request.device_id, &request.household_id) {
        (Some(device), _) => (device.clone(), store.device_context(device)?),
        (None, Some(household)) => {
            let device = store.device_of_household(household)?.ok_or_else(|| {
                RequestError::invalid(format!(
                    "household_id {household:?} is not in the registry or has no registered device"
                ))
            })?;
            let context = store.device_context(&device)?;
            (device, context)
        }
        (None, None) => {
            return Err(RequestError::invalid(
                "a complaint needs device_id or household_id",
            ))
        }
    };
    if let Some(context) = &context {
        if !principal.can_read_township(&context.village.township_id) {
            let (field, value) = match &request.device_id {
                Some(device) => ("device_id", device.as_str()),
                None => ("household_id", context.household.id.as_str()),
            };
            return Err(outside(field, value));
        }
    }
    if let (Some(device), Some(household)) = (&request.device_id, &request.household_id) {
        match &context {
            Some(context) if context.household.id == *household => {}
            Some(context) => {
                return Err(RequestError::invalid(format!(
                    "device_id {device:?} belongs to household {:?}, not to household_id {household:?}",
                    context.household.id
                )))
            }
            None => {
                return Err(RequestError::invalid(format!(
                    "device_id {device:?} is not in the registry, so it cannot belong to household_id {household:?}; give one of them"
                )))
            }
        }
    }
    Ok((device_id, context))
}

/// The household's (else the device's) open order, which must be in the principal's scope
/// (an unregistered device's order carries the township of its topic).
fn open_order_in_scope(
    store: &Store,
    principal: &Principal,
    request: &ComplaintRequest,
    device_id: &str,
    context: &Option<store::DeviceContext>,
) -> Result<Option<OrderRow>, RequestError> {
    let existing = match context {
        Some(context) => store
            .open_order_for_household(&context.household.id)?
            .or(store.open_order_for_device(device_id)?),
        None => store.open_order_for_device(device_id)?,
    };
    if let Some(order) = &existing {
        if !principal.can_read_township(&order.township) {
            let (field, value) = match (&request.device_id, &request.household_id) {
                (None, Some(household)) => ("household_id", household.as_str()),
                _ => ("device_id", device_id),
            };
            return Err(outside(field, value));
        }
    }
    Ok(existing)
}
