//! The TUI's settings, the `[tui]` section of `causeway.toml`. Field docs
//! are the user docs. This module only describes and checks settings; it
//! must not open a connection or touch the terminal.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::TuiError;

/// The shortest refresh interval accepted, so a typo cannot hammer the API.
const MIN_REFRESH_INTERVAL_MS: u64 = 100;

/// Where the TUI reads flows and how often it reads them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// The query API's base URL.
    pub query_url: String,
    /// How often the flows list and the open flow are fetched again, in
    /// milliseconds (at least 100); an unreachable API is retried as often.
    pub refresh_interval_ms: u64,
    /// The bearer token sent to the query API (one of its `tokens` or
    /// `read_tokens`), when it asks for one.
    pub token: Option<String>,
}

impl Default for TuiConfig {
    fn default() -> Self {
        Self {
            query_url: "http://127.0.0.1:8686".to_owned(),
            refresh_interval_ms: 2_000,
            token: None,
        }
    }
}

impl TuiConfig {
    /// [`Self::refresh_interval_ms`] as a duration.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_interval_ms)
    }

    /// Checks what [`crate::run`] would otherwise trip over: the URL and
    /// the refresh interval.
    pub fn validate(&self) -> Result<(), TuiError> {
        self.endpoints().map(drop)
    }

    /// The query API's endpoints, once the settings are checked.
    pub(crate) fn endpoints(&self) -> Result<crate::client::Endpoints, TuiError> {
        if self.refresh_interval_ms < MIN_REFRESH_INTERVAL_MS {
            return Err(TuiError::Config {
                field: "refresh_interval_ms",
                reason: format!("must be at least {MIN_REFRESH_INTERVAL_MS}"),
            });
        }
        if self
            .token
            .as_deref()
            .is_some_and(|token| token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            // The reason never repeats the token.
            return Err(TuiError::Config {
                field: "token",
                reason: "must be visible ASCII without spaces".to_owned(),
            });
        }
        Ok(crate::client::Endpoints::new(&self.query_url)?.with_token(self.token.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_a_too_short_refresh_is_named() {
        TuiConfig::default().validate().unwrap();
        let config = TuiConfig {
            refresh_interval_ms: 10,
            ..TuiConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(
            matches!(
                error,
                TuiError::Config {
                    field: "refresh_interval_ms",
                    ..
                }
            ),
            "{error}"
        );
        let config = TuiConfig {
            query_url: "ftp://example".into(),
            ..TuiConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(TuiError::InvalidUrl { .. })
        ));
    }
}
