//! The limits every listener enforces, and the one check every listener
//! address goes through. Field docs are the user docs.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one HTTP listener lets a client hold. The defaults let ordinary
/// clients through untouched and close what a slow or hostile one keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Most connections open at once; one more is answered 503 with
    /// `Retry-After` and closed.
    pub max_connections: usize,
    /// Longest time a client may take to send a request's headers, in
    /// milliseconds.
    pub header_read_timeout_ms: u64,
    /// Longest time a client may take to send a request's whole body,
    /// counted from when its head arrived, in milliseconds; past it the
    /// request is answered 408 (a byte now and then does not extend it).
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight and no byte sent either way
    /// for this long is closed, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Longest a connection is kept, in milliseconds: past it, it finishes
    /// the requests it has (at most ten seconds more) and is closed, so a
    /// client that is never idle (HTTP/2 pings, a request now and then)
    /// cannot hold a connection for good. Clients reconnect.
    pub max_connection_age_ms: u64,
    /// Longest request target (path and query string), in bytes; a longer
    /// one is answered 414.
    pub max_uri_bytes: usize,
    /// Largest request head (request line and headers), in bytes; the
    /// connection's read buffer is bounded by it (at least 8192).
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connection_age_ms: 600_000,
            max_uri_bytes: 16 * 1024,
            max_header_bytes: 64 * 1024,
        }
    }
}

impl HttpLimits {
    pub(crate) fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.max(1))
    }

    pub(crate) fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms.max(1))
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1))
    }

    pub(crate) fn max_connection_age(&self) -> Duration {
        Duration::from_millis(self.max_connection_age_ms.max(1))
    }
}

/// A listener address that may not be bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to listen on {addr} for `{setting}` with no token configured: only loopback \
     addresses (127.0.0.1, [::1]) may be served without one; set `{tokens_setting}` to bind wider"
)]
pub struct ListenAddrError {
    /// The address that was asked for.
    pub addr: SocketAddr,
    /// The setting that asked for it, as the user wrote it.
    pub setting: String,
    /// The setting whose tokens would allow it.
    pub tokens_setting: String,
}

/// The one check every listener address goes through, whatever set it (a
/// flag, a variable, the config file): loopback, or any address once the
/// listener requires a token (`has_tokens`, from `tokens_setting`).
pub fn check_listen_addr(
    addr: SocketAddr,
    setting: &str,
    tokens_setting: &str,
    has_tokens: bool,
) -> Result<SocketAddr, ListenAddrError> {
    if addr.ip().is_loopback() || has_tokens {
        Ok(addr)
    } else {
        Err(ListenAddrError {
            addr,
            setting: setting.to_owned(),
            tokens_setting: tokens_setting.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_pass_without_a_token() {
        for ok in ["127.0.0.1:4318", "127.9.9.9:0", "[::1]:8686"] {
            let addr: SocketAddr = ok.parse().unwrap();
            assert_eq!(
                check_listen_addr(addr, "query.addr", "query.tokens", false),
                Ok(addr)
            );
        }
        for wide in ["0.0.0.0:4317", "[::]:4317", "192.0.2.1:80"] {
            let addr: SocketAddr = wide.parse().unwrap();
            let error = check_listen_addr(addr, "collector.grpc_addr", "collector.tokens", false)
                .unwrap_err();
            assert!(error.to_string().contains("collector.grpc_addr"), "{error}");
            assert!(error.to_string().contains("collector.tokens"), "{error}");
            assert_eq!(
                check_listen_addr(addr, "collector.grpc_addr", "collector.tokens", true),
                Ok(addr)
            );
        }
    }
}
