//! Steps a flaky mobile connection may send twice: a POST that carries an `Idempotency-Key` is
//! applied once. Its first answer is stored with the key (per caller, for a day) in the same
//! transaction as the step itself, so a retry of the same step gets that answer back without
//! applying anything, and the same key sent with a different step is refused.

use serde::Serialize;

use super::store::{Store, StoredStep};
use super::{OrderService, RequestError};
use crate::auth::Principal;

/// Shortest key: long enough that two phones do not pick the same one.
pub const MIN_KEY_CHARS: usize = 8;
/// Longest key.
pub const MAX_KEY_CHARS: usize = 64;

/// A client's key for one step (8 to 64 of `A-Z a-z 0-9 - _`, e.g. a UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a header value; the error names the header and says what a key looks like.
    pub fn parse(text: &str) -> Result<IdempotencyKey, String> {
        let text = text.trim();
        let length = text.chars().count();
        if !(MIN_KEY_CHARS..=MAX_KEY_CHARS).contains(&length)
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "Idempotency-Key header: {MIN_KEY_CHARS} to {MAX_KEY_CHARS} of A-Z a-z 0-9 - _ (e.g. a UUID), one new key per step; got {length} characters"
            ));
        }
        Ok(IdempotencyKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a step answered: its status and JSON body, and whether this is the stored answer of
/// an earlier send of the same step.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

/// A step run with [`OrderService::once_in`]: applied now (with what the caller still has to
/// announce), or answered from the store.
pub(super) enum Once<X> {
    Fresh { answered: Answered, extra: X },
    Replayed(Answered),
}

/// The fingerprint of a step: what it asks, hashed (SHA-256, hex).
fn fingerprint(what: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, what.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl OrderService {
    /// Runs `step` in the caller's transaction unless `key` already has a stored answer for
    /// `principal`: then that answer is returned when `what` (the route and its body) is the
    /// same, and a 422 naming the header when it is not. A fresh answer (`status`, the JSON
    /// of what `step` returns first) is stored with the key in the same transaction; a
    /// refused step stores nothing, so sending it again tries again.
    pub(super) fn once_in<T: Serialize, X>(
        &self,
        store: &mut Store,
        principal: &Principal,
        key: Option<&IdempotencyKey>,
        what: &str,
        status: u16,
        step: impl FnOnce(&mut Store) -> Result<(T, X), RequestError>,
    ) -> Result<Once<X>, RequestError> {
        let now = self.clock.now_ms();
        let actor = principal.actor();
        let print = fingerprint(what);
        if let Some(key) = key {
            if let Some(stored) = store.stored_step(&actor, key.as_str(), now)? {
                if stored.fingerprint != print {
                    return Err(RequestError::out_of_range(
                        "Idempotency-Key",
                        format!(
                            "Idempotency-Key header {:?} was sent with another step before; send a new key for a new step",
                            key.as_str()
                        ),
                    ));
                }
                tracing::info!(key = key.as_str(), by = %actor, "idempotent step sent again: the first answer is returned");
                return Ok(Once::Replayed(Answered {
                    status: stored.status,
                    body: stored.body,
                    replayed: true,
                }));
            }
        }
        let (value, extra) = step(store)?;
        let body = serde_json::to_string(&value)
            .map_err(|e| RequestError::invalid(format!("the answer could not be encoded: {e}")))?;
        if let Some(key) = key {
            store.store_step(
                &actor,
                key.as_str(),
                &StoredStep {
                    fingerprint: print,
                    status,
                    body: body.clone(),
                },
                now,
            )?;
        }
        Ok(Once::Fresh {
            answered: Answered {
                status,
                body,
                replayed: false,
            },
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_plain() {
        assert!(IdempotencyKey::parse("0b7e2c1a-93f4-4d7e-8a1c-2f5d9e6b4c3a").is_ok());
        assert!(IdempotencyKey::parse("short").is_err());
        assert!(IdempotencyKey::parse(&"a".repeat(65)).is_err());
        let error = IdempotencyKey::parse("has space inside").unwrap_err();
        assert!(error.contains("Idempotency-Key"), "{error}");
    }

    #[test]
    fn the_same_step_has_the_same_fingerprint() {
        assert_eq!(fingerprint("a"), fingerprint("a"));
        assert_ne!(fingerprint("a"), fingerprint("b"));
        assert_eq!(fingerprint("a").len(), 64);
    }
}
