//! The HTTP plumbing that causeway's daemons share, so that no client can
//! crash or starve one of them.
//!
//! - [`serve`] is the accept loop: a connection limit (past it, a canned
//!   503 with `Retry-After`), a header read timeout, an idle timeout, HTTP/1
//!   and HTTP/2, graceful shutdown.
//! - [`harden`] wraps a daemon's `Router`: a body read timeout, a URI length
//!   limit (414), a panic inside a handler answered 500, and every error
//!   answered as JSON `{"error":{"code","message"}}`, including the ones
//!   axum and tower write themselves (extractor rejections, 404, 405, 413).
//! - [`HttpLimits`] is the part of every daemon's config that sets them.
//! - [`authorize`] requires a bearer token ([`Access`]) on every route but
//!   `/healthz`; [`Listener`] with [`TlsFiles`] makes [`serve`] speak TLS.
//!
//! It knows nothing of the index, the collector or query: those build their
//! `Router` and hand it here.

mod access;
mod errors;
mod limits;
mod serve;
mod tls;

pub use access::{Access, Token, TokenError, authorize, check_tokens};
pub use errors::error_response;
pub use limits::{HttpLimits, ListenAddrError, check_listen_addr};
pub use serve::{harden, serve};
pub use tls::{Listener, TlsError, TlsFiles};
