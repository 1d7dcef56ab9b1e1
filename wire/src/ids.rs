//! Validated identifiers that appear as MQTT topic levels (device, box, township ids).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than {max} characters")]
    TooLong { max: usize },
    #[error("identifier {value:?} has character {character:?}; allowed are a-z, 0-9, '-' and '_'")]
    BadCharacter { value: String, character: char },
}

const MAX_ID_LEN: usize = 64;

fn validate(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN });
    }
    if let Some(character) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadCharacter {
            value: value.to_owned(),
            character,
        });
    }
    Ok(())
}

macro_rules! topic_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an identifier (lowercase ASCII letters, digits, `-`, `_`).
            pub fn parse(value: &str) -> Result<Self, IdError> {
                validate(value)?;
                Ok(Self(value.to_owned()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

topic_id!(
    /// A device (heat pump or boiler) identifier, unique in the district, e.g. `yq-dongguan-0007-hp`.
    DeviceId
);
topic_id!(
    /// A township identifier in pinyin, e.g. `yanqing`, `kangzhuang`, `zhangshanying`.
    TownshipId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_lowercase_ids() {
        assert_eq!(
            DeviceId::parse("yq-0001_hp").map(|d| d.to_string()),
            Ok("yq-0001_hp".into())
        );
    }

    #[test]
    fn rejects_topic_wildcards_and_separators() {
        for bad in ["a/b", "+", "#", "A", "", "é"] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(
            TownshipId::parse(&"x".repeat(65)),
            Err(IdError::TooLong { max: 64 })
        );
    }

    #[test]
    fn deserializing_validates() {
        let bad: Result<DeviceId, _> = serde_json::from_str("\"a/b\"");
        assert!(bad.is_err());
    }
}
