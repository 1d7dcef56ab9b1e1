//! Bearer tokens and roles for the HTTP API: operator (everything), township officer (own
//! township), team (own team's orders; a technician's own token is a team token that names
//! the technician too, and sees the team's orders and the technician's own), read-only.
//! Tokens are compared in constant time.

use serde::Deserialize;

use crate::config::{ApiConfig, AuthMode};
use crate::orders::store::OrderRow;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Township,
    Team,
    ReadOnly,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub township: Option<String>,
    pub team: Option<String>,
    /// The technician of a per-technician token (role `team`): the steps it records are the
    /// technician's, and an accept takes the order over for them.
    pub technician: Option<String>,
}

impl Principal {
    /// The principal of a gateway whose API checks no tokens (local demo).
    pub fn unauthenticated_operator() -> Self {
        Self {
            name: "operator".into(),
            role: Role::Operator,
            township: None,
            team: None,
            technician: None,
        }
    }

    /// May see this order.
    pub fn can_read(&self, order: &OrderRow) -> bool {
        match self.role {
            Role::Operator | Role::ReadOnly => true,
            Role::Township => self.township.as_deref() == Some(order.township.as_str()),
            Role::Team => {
                (self.team.is_some() && self.team == order.team_id)
                    || (self.technician.is_some() && self.technician == order.technician_id)
            }
        }
    }

    /// May see everything of a township (devices, alerts, reports).
    pub fn can_read_township(&self, township: &str) -> bool {
        match self.role {
            Role::Operator | Role::ReadOnly => true,
            Role::Township => self.township.as_deref() == Some(township),
            Role::Team => false,
        }
    }

    /// Sees residents' names, phone numbers and house numbers only masked (`王*`,
    /// `138****5678`): the read-only role (bureaus, auditors). Everyone else who may read an
    /// order or a household sees them in full: operators (dispatch, the callback post), township
    /// officers in their township, and the team the order is assigned to.
    pub fn masks_people(&self) -> bool {
        matches!(self.role, Role::ReadOnly)
    }

    /// Sees the whole district.
    pub fn sees_district(&self) -> bool {
        matches!(self.role, Role::Operator | Role::ReadOnly)
    }

    /// The actor name recorded on order events.
    pub fn actor(&self) -> String {
        match self.role {
            Role::Operator => format!("operator:{}", self.name),
            Role::Township => format!("township:{}", self.name),
            Role::Team if self.technician.is_some() => format!("technician:{}", self.name),
            Role::Team => format!("team:{}", self.name),
            Role::ReadOnly => format!("read_only:{}", self.name),
        }
    }
}

/// Checks bearer tokens.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mode: AuthMode,
    tokens: Vec<(Vec<u8>, Principal)>,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("unknown or malformed bearer token")]
    Unknown,
}

impl Authenticator {
    pub fn new(config: &ApiConfig) -> Self {
        let tokens = config
            .tokens
            .iter()
            .map(|t| {
                (
                    t.token.as_bytes().to_vec(),
                    Principal {
                        name: t.name.clone(),
                        role: t.role,
                        township: t.township.clone(),
                        team: t.team.clone(),
                        technician: t.technician.clone(),
                    },
                )
            })
            .collect();
        Self {
            mode: config.auth,
            tokens,
        }
    }

    /// The principal of an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        if self.mode == AuthMode::Disabled {
            return Ok(Principal::unauthenticated_operator());
        }
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Unknown)?
            .trim()
            .as_bytes();
        let mut found = None;
        for (candidate, principal) in &self.tokens {
            // Look at every token and every byte, so timing does not tell how close a guess was.
            if constant_time_eq(candidate, token) {
                found = Some(principal);
            }
        }
        found.cloned().ok_or(AuthError::Unknown)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for (index, byte) in a.iter().enumerate() {
        difference |= byte ^ b.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn authenticator() -> Authenticator {
        Authenticator::new(&ApiConfig {
            auth: AuthMode::Tokens,
            tokens: vec![TokenConfig {
                name: "team-a".into(),
                token: "0123456789abcdef-team".into(),
                role: Role::Team,
                township: None,
                team: Some("aurora-yanqing".into()),
                technician: None,
            }],
        })
    }

    #[test]
    fn only_configured_tokens_pass() {
        let auth = authenticator();
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("Bearer nope")),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            auth.authenticate(Some("Basic abc")),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            auth.authenticate(Some("Bearer 0123456789abcdef-tea")),
            Err(AuthError::Unknown)
        );
        let principal = auth
            .authenticate(Some("Bearer 0123456789abcdef-team"))
            .expect("valid");
        assert_eq!(principal.role, Role::Team);
        assert_eq!(principal.actor(), "team:team-a");
    }

    fn order(team: Option<&str>, technician: Option<&str>) -> OrderRow {
        OrderRow {
            id: 1,
            episode_id: None,
            device_id: "d".into(),
            household_id: None,
            village_id: None,
            vendor_id: None,
            township: "yanqing".into(),
            category: "repair".into(),
            priority: "high".into(),
            source: "rule".into(),
            summary: String::new(),
            created_at_ms: 0,
            state: crate::orders::OrderState::Dispatched,
            pre_emptive: true,
            in_warranty: None,
            team_id: team.map(Into::into),
            technician_id: technician.map(Into::into),
            dispatched_at_ms: None,
            accepted_at_ms: None,
            on_site_at_ms: None,
            resolved_at_ms: None,
            closed_at_ms: None,
            satisfaction: None,
            parts_cents: 0,
            resident_pays_cents: 0,
            misuse: false,
            sla_flags: 0,
            sla_from_ms: None,
            sla_class: crate::orders::sla::SlaClass::Repair,
        }
    }

    #[test]
    fn a_technician_token_sees_the_team_s_orders_and_its_own_only() {
        let technician = Principal {
            name: "li".into(),
            role: Role::Team,
            township: None,
            team: Some("aurora-yanqing".into()),
            technician: Some("tech-li".into()),
        };
        assert!(technician.can_read(&order(Some("aurora-yanqing"), None)));
        assert!(technician.can_read(&order(Some("third-party"), Some("tech-li"))));
        assert!(!technician.can_read(&order(Some("third-party"), Some("tech-wang"))));
        assert!(!technician.can_read(&order(None, None)));
        assert_eq!(technician.actor(), "technician:li");
    }

    #[test]
    fn disabled_auth_makes_everyone_an_operator() {
        let auth = Authenticator::new(&ApiConfig {
            auth: AuthMode::Disabled,
            tokens: Vec::new(),
        });
        assert_eq!(auth.authenticate(None).map(|p| p.role), Ok(Role::Operator));
    }
}
