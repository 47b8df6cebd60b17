//! The OpenAPI 3 document of the query API, served at
//! `GET /api/v1/openapi.json`, generated from the types the handlers use:
//! the `#[utoipa::path]` annotation on each handler (its path, parameters
//! from the handler's `IntoParams` struct, responses), and the `ToSchema`
//! of the model's API types.
//!
//! The paths come from the router's own table (`server::routes`, which
//! serves each handler where its annotation says), so no route is served
//! undocumented; this module adds what is not a route's: the info, the
//! schemas and the shared error answers. It only describes the API: it
//! must not answer any request but its own, and must not import the
//! handlers' modules (they import it).

use std::sync::OnceLock;

use axum::Json;
use causeway_model::{
    ApiErrorBody, FlowDetail, FlowSummary, FlowsPage, Record, SearchHits, ServicesPage,
    TopologyPage, TraceRecords,
};
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::path::Paths;
use utoipa::{OpenApi, ToResponse, ToSchema};

use crate::alerts::{AlertsPage, Notification};
use crate::error::RequestError;

/// All of the document but its paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "causeway query API",
        version = env!("CARGO_PKG_VERSION"),
        description = "Searches causeway records and reconstructs cross-service event flows. \
            Read-only; every error is `{\"error\":{\"code\":...,\"message\":...}}` \
            (`ApiErrorBody`), including the ones no route lists: 405, 408, 413, 414 and 431 \
            for requests the server refuses before any handler.",
    ),
    components(
        // Every answer's body, each with the schemas it refers to. The
        // tail's events are `Record` and `FlowSummary`; `Notification` is
        // what the alert rules post to the webhook.
        schemas(
            FlowsPage,
            FlowDetail,
            TraceRecords,
            SearchHits,
            ServicesPage,
            TopologyPage,
            AlertsPage,
            Health,
            ApiErrorBody,
            Record,
            FlowSummary,
            Notification,
        ),
        responses(BadRequest, NotFound, Unavailable, Internal),
    ),
)]
struct ApiDoc;

static DOCUMENT: OnceLock<Document> = OnceLock::new();

/// The document of the API whose routes describe `paths`, built on the
/// first call (every router has the same routes) and kept for
/// [`openapi_json`].
pub(crate) fn document(paths: impl FnOnce() -> Paths) -> &'static Document {
    DOCUMENT.get_or_init(|| {
        let mut document = ApiDoc::openapi();
        document.paths = paths();
        document
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document of this API", body = Object))
)]
pub(crate) async fn openapi_json() -> Result<Json<&'static Document>, RequestError> {
    // `router` builds the document before it serves this route.
    DOCUMENT
        .get()
        .map(Json)
        .ok_or_else(|| RequestError::Internal("the OpenAPI document was not built".into()))
}

/// `GET /healthz`.
#[derive(ToSchema)]
#[allow(dead_code)] // described only: healthz writes its answer with `json!`
pub(crate) struct Health {
    /// Always `ok`: the daemon answers.
    #[schema(example = "ok")]
    status: String,
    /// `ready`, or `waiting for the collector` while the index does not
    /// exist yet (reads answer 503 `index_not_ready` meanwhile).
    #[schema(example = "ready")]
    index: String,
}

/// `bad_request`: a parameter could not be read (an unknown status, a bad
/// time, an invalid cursor or trace id), or the search query is invalid or
/// too deeply nested.
#[derive(ToResponse)]
#[allow(dead_code)] // described only: `RequestError` writes the answer
pub(crate) struct BadRequest(ApiErrorBody);

/// `not_found`: no flow or trace with that id.
#[derive(ToResponse)]
#[allow(dead_code)] // described only: `RequestError` writes the answer
pub(crate) struct NotFound(ApiErrorBody);

/// `index_not_ready`: the collector has not created the index yet; or
/// `busy`: too many reads in progress. Retry after `Retry-After` seconds.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))]
#[allow(dead_code)] // described only: `RequestError` writes the answer
pub(crate) struct Unavailable(ApiErrorBody);

/// `internal`: the read failed; the details are in the daemon's log only.
#[derive(ToResponse)]
#[allow(dead_code)] // described only: `RequestError` writes the answer
pub(crate) struct Internal(ApiErrorBody);
