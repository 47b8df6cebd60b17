//! `GET /api/v1/openapi.json` describes the API the router serves: the
//! paths of `route_paths` (the table the router is built from) and every
//! one of them served, the enums by the names serde writes, references
//! that all lead somewhere, and schemas that the real answers of every
//! route, errors included, validate against.
//!
//! The validation is structural and written here (types, required and
//! undocumented properties, enums, patterns, `oneOf`), not a full JSON
//! Schema validator.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use causeway_index::RecordIndex;
use causeway_model::{
    AnomalyKind, CorrelationId, EventId, FlowStatus, Level, Record, SpanId, SpanLink, Stage,
    StepStatus, Timestamp, TraceId,
};
use causeway_query::{AlertRule, AlertsConfig, QueryConfig, QueryState, route_paths, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// One flow: order publishes, payment receives and then handles or fails,
/// and a handled payment publishes to shipping.
fn flow(flow: &str, t0: i64, fail: bool) -> (TraceId, Vec<Record>) {
    let trace = TraceId::random();
    let at = |ms: i64, service: &str, stage: Stage, event: &str, ty: &str| {
        let mut r = Record::new(
            Timestamp::from_micros(t0 + ms * 1_000),
            service,
            format!("{service} {stage} {ty}"),
        );
        r.stage = stage;
        r.instance = Some(format!("{service}-1"));
        r.correlation_id = Some(CorrelationId::new(flow).unwrap());
        r.event_id = Some(EventId::new(format!("{flow}-{event}")).unwrap());
        r.event_type = Some(ty.to_owned());
        r.trace_id = Some(trace);
        r.span_id = Some(SpanId::random());
        r.messaging_system = Some("inproc".into());
        r.destination = Some(ty.to_lowercase());
        r
    };
    let mut records = vec![
        at(0, "order", Stage::Published, "e1", "OrderPlaced"),
        at(10, "payment", Stage::Received, "e1", "OrderPlaced"),
    ];
    if fail {
        let mut failed = at(30, "payment", Stage::Failed, "e1", "OrderPlaced");
        failed.level = Level::Error;
        failed.duration_us = Some(20_000);
        failed.error_type = Some("CardDeclined".into());
        failed.error_message = Some("card declined by issuer".into());
        failed.attributes.insert("amount".into(), json!(125));
        records.push(failed);
    } else {
        let mut child = at(20, "payment", Stage::Published, "e2", "PaymentAuthorized");
        child.causation_id = Some(EventId::new(format!("{flow}-e1")).unwrap());
        child.parent_span_id = records[1].span_id;
        records.push(child);
        let mut handled = at(30, "payment", Stage::Handled, "e1", "OrderPlaced");
        handled.duration_us = Some(20_000);
        records.push(handled);
        let mut received = at(40, "shipping", Stage::Received, "e2", "PaymentAuthorized");
        received.consumer_group = Some("shipping-workers".into());
        received.links = vec![SpanLink {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
        }];
        records.push(received);
    }
    (trace, records)
}

struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
    trace: TraceId,
}

/// Two flows, a log line that could not be read, and one alert rule.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig {
        alerts: AlertsConfig {
            rules: vec![AlertRule::FailedFlows {
                name: "payments failing".into(),
                event_type: None,
                more_than: 0,
                window_secs: 3_600,
            }],
            ..AlertsConfig::default()
        },
        ..QueryConfig::new(dir.path())
    };
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let mut writer = index.writer(15_000_000).unwrap();
    let t0 = Timestamp::now().as_micros() - 60_000_000;
    let (trace, happy) = flow("order-1", t0, false);
    let (_, declined) = flow("order-2", t0 + 1_000_000, true);
    for record in happy.iter().chain(&declined) {
        writer.add(record).unwrap();
    }
    writer
        .add(&Record::malformed(
            Timestamp::from_micros(t0 + 2_000_000),
            "payment",
            "{\"oops\"",
            "not JSON",
        ))
        .unwrap();
    writer.commit().unwrap();
    Fixture {
        _dir: dir,
        app: router(QueryState::new(config)),
        trace,
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&bytes)));
    (status, headers, body)
}

async fn document(app: &axum::Router) -> Value {
    let (status, headers, doc) = get(app, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    doc
}

/// `#/components/<kind>/<name>`, or the object itself when it is no `$ref`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap();
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {reference}"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What is wrong with `value` under `schema`, each as `at: reason`.
fn violations(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut wrong = Vec::new();
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            wrong.extend(violations(doc, part, value, at));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let fitting = one
            .iter()
            .filter(|s| violations(doc, s, value, at).is_empty())
            .count();
        if fitting != 1 {
            wrong.push(format!("{at}: fits {fitting} of oneOf: {value}"));
        }
    }
    let actual = type_of(value);
    let allowed: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    // An integer is a number too.
    let fits = allowed.contains(&actual) || (actual == "integer" && allowed.contains(&"number"));
    if !allowed.is_empty() && !fits {
        wrong.push(format!("{at}: {actual} where {allowed:?} is documented"));
        return wrong;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        wrong.push(format!("{at}: {value} is not one of {values:?}"));
    }
    match value {
        Value::Object(object) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(name) {
                    wrong.push(format!("{at}: required `{name}` is missing"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let open = schema
                .get("additionalProperties")
                .is_some_and(|a| a != &Value::Bool(false));
            for (name, field) in object {
                let at = format!("{at}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => wrong.extend(violations(doc, property, field, &at)),
                    None if open => {}
                    None => wrong.push(format!("{at}: not documented")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, value) in items.iter().enumerate() {
                    wrong.extend(violations(doc, item, value, &format!("{at}[{i}]")));
                }
            }
        }
        Value::String(text) => {
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && !regex::Regex::new(pattern).unwrap().is_match(text)
            {
                wrong.push(format!("{at}: {text:?} does not match {pattern}"));
            }
            let chars = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                wrong.push(format!("{at}: shorter than {min}"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                wrong.push(format!("{at}: longer than {max}"));
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(n)) =
                (schema.get("minimum").and_then(Value::as_f64), n.as_f64())
                && n < min
            {
                wrong.push(format!("{at}: {n} is below {min}"));
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
    wrong
}

/// The documented GET of `path`.
fn operation<'a>(doc: &'a Value, path: &str) -> &'a Value {
    let item = &doc["paths"][path];
    assert!(item.is_object(), "{path} is not documented");
    &item["get"]
}

/// Checks a real answer of `uri` (documented as `path`) against the
/// document: its status is listed, and its body fits the listed schema.
async fn answer_fits(app: &axum::Router, doc: &Value, path: &str, uri: &str) -> StatusCode {
    let (status, headers, body) = get(app, uri).await;
    let response = &operation(doc, path)["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{uri} answered {status}, which {path} does not list: {body}"
    );
    let response = resolve(doc, response);
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{uri}: {status} has no JSON schema");
    let wrong = violations(doc, schema, &body, uri);
    assert!(wrong.is_empty(), "{wrong:#?}\n{body:#}");
    for name in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, _)| name)
    {
        assert!(
            headers.contains_key(name.as_str()),
            "{uri}: no {name} header"
        );
    }
    status
}

fn enum_names(doc: &Value, schema: &str) -> Vec<String> {
    doc["components"]["schemas"][schema]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema} has no enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// What serde writes for each of `values`.
fn wire_names<T: serde::Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Every step status. `StepStatus` has no `ALL`: a new status fails to
/// build here until it is listed.
fn step_statuses() -> Vec<StepStatus> {
    use StepStatus::*;
    let all = [
        Pending,
        InProgress,
        Handled,
        Retrying,
        Failed,
        DeadLettered,
        Compensated,
    ];
    for status in all {
        match status {
            Pending | InProgress | Handled | Retrying | Failed | DeadLettered | Compensated => {}
        }
    }
    all.to_vec()
}

#[tokio::test]
async fn the_document_is_openapi_3_with_the_paths_the_router_serves() {
    let f = fixture();
    let doc = document(&f.app).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(doc["info"]["title"], "causeway query API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let served = route_paths();
    assert_eq!(documented, served.iter().map(String::as_str).collect());
    assert_eq!(served.len(), documented.len(), "a path served twice");
    for path in &documented {
        let methods: Vec<&String> = doc["paths"][path].as_object().unwrap().keys().collect();
        assert_eq!(methods, ["get"], "{path}");
        let responses = operation(&doc, path)["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{path}");
    }

    // Every reference leads somewhere.
    fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(object) => {
                found.extend(object.get("$ref").and_then(Value::as_str));
                object.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(found.len() > 50, "{}", found.len());
    for reference in found {
        let pointer = reference.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "dangling {reference}");
    }

    // Every documented path, with its path parameters filled in, is served.
    for path in &documented {
        let uri = path
            .replace("{correlation_id}", "order-1")
            .replace("{trace_id}", &f.trace.to_string())
            .replace("{event_id}", "order-1-e1");
        assert!(
            !uri.contains('{'),
            "{path} has a parameter this test does not fill"
        );
        let response = f
            .app
            .clone()
            .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
    // ...and an undocumented one is not.
    let (status, _, body) = get(&f.app, "/api/v1/undocumented").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "no such endpoint");
}

#[tokio::test]
async fn the_enums_list_exactly_the_names_serde_writes() {
    let f = fixture();
    let doc = document(&f.app).await;
    let flow_statuses: Vec<&str> = FlowStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(enum_names(&doc, "FlowStatus"), flow_statuses);
    assert_eq!(enum_names(&doc, "FlowStatus"), wire_names(&FlowStatus::ALL));
    let steps: Vec<&str> = step_statuses().iter().map(|s| s.as_str()).collect();
    assert_eq!(enum_names(&doc, "StepStatus"), steps);
    assert_eq!(enum_names(&doc, "StepStatus"), wire_names(&step_statuses()));
    let kinds: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(enum_names(&doc, "AnomalyKind"), kinds);
    assert_eq!(
        enum_names(&doc, "AnomalyKind"),
        wire_names(&AnomalyKind::ALL)
    );
    assert_eq!(enum_names(&doc, "Stage"), wire_names(&Stage::ALL));
    for name in ["in_progress", "dead_lettered", "duplicate_delivery"] {
        assert!(
            doc.to_string().contains(&format!("\"{name}\"")),
            "{name} is not in the document"
        );
    }

    // The list filters are arrays of those enums, written comma-separated.
    let params = operation(&doc, "/api/v1/flows")["parameters"]
        .as_array()
        .unwrap();
    let names: BTreeSet<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "status",
            "anomaly",
            "service",
            "event_type",
            "since",
            "until",
            "min_duration_ms",
            "q",
            "cursor",
            "limit",
        ])
    );
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap();
    for (name, schema) in [("status", "FlowStatus"), ("anomaly", "AnomalyKind")] {
        let param = param(name);
        assert_eq!(param["in"], "query");
        assert_eq!(param["style"], "form");
        assert_eq!(param["explode"], false);
        let items = resolve(&doc, &param["schema"]["items"]);
        assert_eq!(items, &doc["components"]["schemas"][schema], "{name}");
    }
}

#[tokio::test]
async fn every_route_answers_what_the_document_says() {
    let f = fixture();
    let doc = document(&f.app).await;
    let app = &f.app;
    let trace = f.trace;
    for (path, uri) in [
        ("/api/v1/flows", "/api/v1/flows".to_owned()),
        ("/api/v1/flows", "/api/v1/flows?limit=1".to_owned()),
        (
            "/api/v1/flows",
            "/api/v1/flows?status=failed,completed".to_owned(),
        ),
        (
            "/api/v1/flows/{correlation_id}",
            "/api/v1/flows/order-1".to_owned(),
        ),
        (
            "/api/v1/flows/{correlation_id}",
            "/api/v1/flows/order-2".to_owned(),
        ),
        (
            "/api/v1/flows/by-trace/{trace_id}",
            format!("/api/v1/flows/by-trace/{trace}"),
        ),
        (
            "/api/v1/flows/by-event/{event_id}",
            "/api/v1/flows/by-event/order-1-e2".to_owned(),
        ),
        (
            "/api/v1/traces/{trace_id}",
            format!("/api/v1/traces/{trace}"),
        ),
        ("/api/v1/search", "/api/v1/search?q=*&limit=50".to_owned()),
        (
            "/api/v1/search",
            "/api/v1/search?q=payment&since=1h&stage=failed".to_owned(),
        ),
        ("/api/v1/services", "/api/v1/services".to_owned()),
        ("/api/v1/topology", "/api/v1/topology".to_owned()),
        ("/api/v1/alerts", "/api/v1/alerts".to_owned()),
        ("/healthz", "/healthz".to_owned()),
    ] {
        assert_eq!(
            answer_fits(app, &doc, path, &uri).await,
            StatusCode::OK,
            "{uri}"
        );
    }
    // The answers above hold every kind of record field, and a flow's
    // optional parts.
    let (_, _, search) = get(app, "/api/v1/search?q=*&limit=50").await;
    let written: BTreeSet<&str> = search["hits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|hit| hit.as_object().unwrap().keys().map(String::as_str))
        .collect();
    let declared: BTreeSet<&str> = causeway_model::RecordField::ALL
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(written, declared);

    // The errors, each in the listed shape.
    for (path, uri, status) in [
        (
            "/api/v1/flows",
            "/api/v1/flows?status=exploded",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/flows",
            "/api/v1/flows?cursor=nope",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/flows/{correlation_id}",
            "/api/v1/flows/nobody",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/flows/by-trace/{trace_id}",
            "/api/v1/flows/by-trace/xyz",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/traces/{trace_id}",
            "/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/search",
            "/api/v1/search?q=(((",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(answer_fits(app, &doc, path, uri).await, status, "{uri}");
    }

    // The checks above can fail: a page without its counts, with a
    // property the document does not know, with a null where serde leaves
    // the key out, or with a time that is not what `Timestamp` writes,
    // does not fit.
    let page = json!({
        "flows": [],
        "scan_limited": false,
        "surprise": 1,
        "next_cursor": null,
    });
    let flows_page = json!({"$ref": "#/components/schemas/FlowsPage"});
    let wrong = violations(&doc, &flows_page, &page, "page");
    assert_eq!(
        wrong,
        [
            "page: required `scanned` is missing",
            "page.next_cursor: null where [\"string\"] is documented",
            "page.surprise: not documented",
        ]
    );
    let timestamp = json!({"$ref": "#/components/schemas/Timestamp"});
    assert!(violations(&doc, &timestamp, &json!("2026-11-22T12:00:00Z"), "t").len() == 1);

    // The tail is a stream of events.
    let response = app
        .clone()
        .oneshot(
            Request::get("/api/v1/tail?status=failed")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tail = operation(&doc, "/api/v1/tail");
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(tail["responses"]["200"]["content"]["text/event-stream"].is_object());
    let description = tail["description"].as_str().unwrap();
    for needle in ["event: record", "event: flow", "Last-Event-ID"] {
        assert!(description.contains(needle), "{needle}");
    }
    let (status, _, _) = get(app, "/api/v1/tail?anomaly=exploded").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn before_the_index_exists_reads_answer_the_documented_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(QueryState::new(QueryConfig::new(dir.path())));
    let doc = document(&app).await;
    let unavailable = &doc["components"]["responses"]["Unavailable"];
    assert!(unavailable["headers"]["Retry-After"].is_object());
    for (path, uri) in [
        ("/api/v1/flows", "/api/v1/flows"),
        ("/api/v1/search", "/api/v1/search?q=x"),
        ("/api/v1/topology", "/api/v1/topology"),
    ] {
        assert_eq!(
            answer_fits(&app, &doc, path, uri).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let (status, _, health) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["index"], "waiting for the collector");
}
