//! The one config loader of the edge agent and the gateway: a TOML file's text with environment
//! overrides on top (`PREFIX__SECTION__KEY=value` sets `section.key`), deserialized into the
//! caller's type. The file is first parsed alone, so a syntax or type error in it is placed at
//! its line and column ([`LayeredError::Invalid`]); an override that does not fit is
//! [`LayeredError::Environment`]. The file reaches the `config` crate through [`TomlText`],
//! parsed by the workspace's `toml`, so a binary holds one TOML parser. No IO: the caller
//! reads the file and names it.

use std::fmt;

use serde::de::DeserializeOwned;
use wire::diagnostics;

/// Why a configuration could not be loaded: the two cases before any semantic check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayeredError {
    /// The file alone does not parse or does not deserialize; `place` is `origin:line:column`.
    Invalid { place: String, message: String },
    /// The file is fine but an environment override does not fit (the `config` crate's message).
    Environment(String),
}

impl fmt::Display for LayeredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayeredError::Invalid { place, message } => write!(f, "{place}: {message}"),
            LayeredError::Environment(message) => write!(f, "environment override: {message}"),
        }
    }
}

impl std::error::Error for LayeredError {}

/// Deserializes `text` (the file's content; `origin` names it in errors, e.g. its path) with
/// the environment variables `{env_prefix}__…` on top, `__` between the keys of a path.
pub fn load<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    env_prefix: &str,
) -> Result<T, LayeredError> {
    // The file alone first: toml's errors carry the position.
    toml::from_str::<T>(text).map_err(|e| {
        let (line, column) = diagnostics::line_col(text, e.span().map_or(0, |s| s.start));
        LayeredError::Invalid {
            place: format!("{origin}:{line}:{column}"),
            message: e.message().to_owned(),
        }
    })?;
    config::Config::builder()
        .add_source(TomlText(text.to_owned()))
        .add_source(
            config::Environment::with_prefix(env_prefix)
                .prefix_separator("__")
                .separator("__"),
        )
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| LayeredError::Environment(e.to_string()))
}

/// A TOML file's text as a source of the `config` crate, read with the workspace's `toml` (so
/// a binary built without the `config` crate's `toml` feature holds one TOML parser). Values
/// become what the `config` crate's own TOML format makes of them: integers `i64`, floats
/// `f64`, datetimes their text, no origin.
#[derive(Debug, Clone)]
pub struct TomlText(pub String);

impl config::Source for TomlText {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        let table = toml::de::DeTable::parse(&self.0)
            .map_err(|error| config::ConfigError::Foreign(Box::new(error)))?;
        toml_table(table.into_inner()).map_err(config::ConfigError::Foreign)
    }
}

type ForeignError = Box<dyn std::error::Error + Send + Sync>;

fn toml_table(
    table: toml::de::DeTable<'_>,
) -> Result<config::Map<String, config::Value>, ForeignError> {
    let mut map = config::Map::new();
    for (key, value) in table {
        map.insert(
            key.into_inner().into_owned(),
            toml_value(value.into_inner())?,
        );
    }
    Ok(map)
}

fn toml_value(value: toml::de::DeValue<'_>) -> Result<config::Value, ForeignError> {
    use toml::de::DeValue;
    let value = match value {
        DeValue::String(text) => config::Value::new(None, text.into_owned()),
        DeValue::Float(number) => {
            let float = number.as_str().parse::<f64>()?;
            if float.is_infinite() && !number.as_str().contains("inf") {
                return Err("floating-point number overflowed".into());
            }
            config::Value::new(None, float)
        }
        DeValue::Integer(number) => {
            config::Value::new(None, i64::from_str_radix(number.as_str(), number.radix())?)
        }
        DeValue::Boolean(flag) => config::Value::new(None, flag),
        DeValue::Table(table) => config::Value::new(None, toml_table(table)?),
        DeValue::Array(array) => {
            let values = array
                .into_iter()
                .map(|value| toml_value(value.into_inner()))
                .collect::<Result<Vec<_>, _>>()?;
            config::Value::new(None, values)
        }
        DeValue::Datetime(datetime) => config::Value::new(None, datetime.to_string()),
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        name: String,
        #[serde(default)]
        http: Http,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Http {
        #[serde(default)]
        port: u16,
        #[serde(default)]
        tags: Vec<String>,
    }

    /// Each test its own prefix: tests run in parallel in one process and share its environment.
    fn prefix(test: &str) -> String {
        format!("LAYERED_CONFIG_TEST_{test}")
    }

    #[test]
    fn the_file_alone_loads() {
        let loaded: Example = load(
            "name = \"box\"\n[http]\nport = 80\ntags = [\"a\"]\n",
            "a.toml",
            &prefix("ALONE"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            loaded,
            Example {
                name: "box".into(),
                http: Http {
                    port: 80,
                    tags: vec!["a".into()],
                },
            }
        );
    }

    #[test]
    fn a_syntax_error_is_placed_at_its_line_and_column() {
        let err = load::<Example>("name = \"box\"\n[http]\nport = = 80\n", "a.toml", "UNUSED")
            .expect_err("a syntax error");
        let LayeredError::Invalid { place, .. } = &err else {
            panic!("not placed: {err}");
        };
        assert_eq!(place, "a.toml:3:8");
        assert!(err.to_string().starts_with("a.toml:3:8: "), "{err}");
    }

    #[test]
    fn a_type_error_in_the_file_is_placed_with_toml_s_message() {
        let err = load::<Example>("name = \"box\"\n[http]\nport = \"x\"\n", "a.toml", "UNUSED")
            .expect_err("a string for a number");
        let LayeredError::Invalid { place, message } = &err else {
            panic!("not placed: {err}");
        };
        assert_eq!(place, "a.toml:3:8");
        assert!(message.contains("u16"), "{message}");
        let err = load::<Example>("name = \"box\"\nnope = 1\n", "b.toml", "UNUSED")
            .expect_err("an unknown field");
        assert!(err.to_string().starts_with("b.toml:2:1: "), "{err}");
    }

    #[test]
    fn an_environment_override_goes_on_top_of_the_file() {
        let prefix = prefix("ON_TOP");
        std::env::set_var(format!("{prefix}__HTTP__PORT"), "8080");
        std::env::set_var(format!("{prefix}__NAME"), "other");
        let loaded: Result<Example, _> =
            load("name = \"box\"\n[http]\nport = 80\n", "a.toml", &prefix);
        std::env::remove_var(format!("{prefix}__HTTP__PORT"));
        std::env::remove_var(format!("{prefix}__NAME"));
        let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.name, "other");
        assert_eq!(loaded.http.port, 8080);
    }

    #[test]
    fn an_override_of_the_wrong_type_is_an_environment_error() {
        let prefix = prefix("WRONG_TYPE");
        std::env::set_var(format!("{prefix}__HTTP__PORT"), "eighty");
        let err = load::<Example>("name = \"box\"\n[http]\nport = 80\n", "a.toml", &prefix)
            .expect_err("not a port");
        std::env::remove_var(format!("{prefix}__HTTP__PORT"));
        let LayeredError::Environment(message) = &err else {
            panic!("not an environment error: {err}");
        };
        assert!(message.contains("http.port"), "{message}");
        assert!(
            err.to_string().starts_with("environment override: "),
            "{err}"
        );
    }

    #[test]
    fn the_file_reaches_the_config_crate_with_the_types_of_its_toml_format() {
        let text = "a = 1\nb = 0.5\nc = \"x\"\nd = true\ne = [1, 2]\n\n[f]\ng = 1979-05-27T07:32:00Z\nh = 0x10\n";
        let config = config::Config::builder()
            .add_source(TomlText(text.into()))
            .build()
            .expect("a valid file");
        assert_eq!(config.get_int("a").ok(), Some(1));
        assert_eq!(config.get_float("b").ok(), Some(0.5));
        assert_eq!(config.get_string("c").ok().as_deref(), Some("x"));
        assert_eq!(config.get_bool("d").ok(), Some(true));
        assert_eq!(config.get_array("e").map(|e| e.len()).ok(), Some(2));
        assert_eq!(
            config.get_string("f.g").ok().as_deref(),
            Some("1979-05-27T07:32:00Z")
        );
        assert_eq!(config.get_int("f.h").ok(), Some(16));
        let broken = config::Config::builder()
            .add_source(TomlText("a = ".into()))
            .build();
        assert!(broken.is_err(), "a file that does not parse is an error");
    }
}
