//! A real collector on 127.0.0.1:0 (HTTP and gRPC listeners) takes OTLP
//! exports the way an OpenTelemetry SDK sends them: OTLP/HTTP protobuf and
//! JSON, gzip bodies, OTLP/gRPC (plain and gzip), and answers as the
//! specification says: the export response (with partial success when
//! spans were rejected), a `google.rpc.Status` on errors, 413 for a body
//! that inflates past the limit. What it accepted is read back from the
//! index.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::Write;
use std::time::{Duration, Instant};

use causeway_collector::{CollectorConfig, Listeners, run};
use causeway_index::RecordIndex;
use causeway_model::{Record, Stage, TraceId};
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codec::CompressionEncoding;

/// `google.rpc.Status`, as a client decodes an OTLP/HTTP error.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

struct Daemon {
    http: String,
    grpc: String,
    config: CollectorConfig,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), causeway_collector::CollectorError>>,
    _dir: tempfile::TempDir,
}

async fn start(max_body_bytes: usize) -> Daemon {
    start_in(tempfile::tempdir().unwrap(), max_body_bytes).await
}

/// A collector on the data directory `dir`.
async fn start_in(dir: tempfile::TempDir, max_body_bytes: usize) -> Daemon {
    let mut config = CollectorConfig::new(dir.path());
    config.max_body_bytes = max_body_bytes;
    config.commit_interval_ms = 20;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_url = format!("http://{}", http.local_addr().unwrap());
    let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = Listeners {
        http,
        grpc: Some(grpc),
    };
    let task = tokio::spawn(run(listeners, config.clone(), async {
        let _ = stopped.await;
    }));
    Daemon {
        http: http_url,
        grpc: grpc_url,
        config,
        stop,
        task,
        _dir: dir,
    }
}

impl Daemon {
    /// The records of a flow once `count` of them are searchable (the
    /// acknowledgement may come before the index commit).
    fn flow(&self, key: &str, count: usize) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(index) = RecordIndex::open_existing(&self.config.index_dir()) {
                let records = index
                    .reader()
                    .unwrap()
                    .flow_records(key, 100)
                    .unwrap()
                    .records;
                if records.len() >= count || Instant::now() > deadline {
                    return records;
                }
            }
            assert!(Instant::now() < deadline, "no index after 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        gzip: bool,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.http))
            .header("content-type", content_type);
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        request.body(body).send().await.unwrap()
    }

    /// Stops the collector; its data directory stays until dropped.
    async fn stop(self) -> tempfile::TempDir {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        self._dir
    }

    /// `causeway_collector_records_duplicate_total` once it reaches
    /// `want`, or after 10 s.
    async fn duplicates(&self, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = reqwest::get(format!("{}/metrics", self.http))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let count = text
                .lines()
                .find_map(|l| l.strip_prefix("causeway_collector_records_duplicate_total "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if count >= want || Instant::now() > deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![text("service.name", service)],
        ..Resource::default()
    })
}

fn span(trace: [u8; 16], id: u8, kind: SpanKind, name: &str) -> Span {
    let start = 1_795_348_800_000_000_000;
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![id; 8],
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 3_000_000,
        ..Span::default()
    }
}

fn export(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// A producer in one trace and a consumer in a trace of its own, linked.
fn producer_and_consumer(producer_trace: [u8; 16], consumer_trace: [u8; 16]) -> [Span; 2] {
    let mut send = span(producer_trace, 1, SpanKind::Producer, "send orders");
    send.attributes = vec![
        text("messaging.system", "rabbitmq"),
        text("messaging.destination.name", "orders"),
        text("messaging.message.id", "msg-1"),
    ];
    let mut process = span(consumer_trace, 2, SpanKind::Consumer, "process orders");
    process.attributes = vec![
        text("messaging.system", "rabbitmq"),
        text("messaging.destination.name", "orders"),
        text("messaging.consumer.group.name", "payment"),
        text("messaging.operation.type", "process"),
    ];
    process.links = vec![Link {
        trace_id: producer_trace.to_vec(),
        span_id: vec![1; 8],
        ..Link::default()
    }];
    [send, process]
}

fn key(trace: [u8; 16]) -> String {
    TraceId::from_bytes(trace).unwrap().to_string()
}

fn stages(records: &[Record]) -> Vec<Stage> {
    let mut stages: Vec<Stage> = records.iter().map(|r| r.stage).collect();
    stages.sort_unstable();
    stages
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_over_http_forms_one_flow_from_two_services_and_two_traces() {
    let daemon = start(1 << 20).await;
    let [send, process] = producer_and_consumer([0x11; 16], [0x12; 16]);
    for request in [
        export("order", vec![send]),
        export("payment", vec![process]),
    ] {
        let response = daemon
            .post(
                "/v1/traces",
                "application/x-protobuf",
                false,
                request.encode_to_vec(),
            )
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-protobuf");
        let body = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
        assert_eq!(body.partial_success, None);
    }
    let flow = daemon.flow(&key([0x11; 16]), 3);
    assert_eq!(
        stages(&flow),
        [Stage::Published, Stage::Received, Stage::Handled],
        "{flow:?}"
    );
    let handled = flow.iter().find(|r| r.stage == Stage::Handled).unwrap();
    assert_eq!(handled.service, "payment");
    assert_eq!(handled.trace_id, TraceId::from_bytes([0x12; 16]));
    assert_eq!(handled.duration_us, Some(3_000));
    assert_eq!(handled.consumer_group.as_deref(), Some("payment"));
    assert_eq!(handled.links.len(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_over_http_reads_hex_ids_and_int64_strings_and_answers_json() {
    let daemon = start(1 << 20).await;
    let body = r#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"inventory"}}]},
      "scopeLogs":[{"logRecords":[{
        "timeUnixNano":"1795348800000000000","severityNumber":17,
        "body":{"stringValue":"out of stock"},
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "attributes":[
          {"key":"messaging.message.conversation_id","value":{"stringValue":"order-77"}},
          {"key":"sku","value":{"intValue":"4711"}}]}]}]}]}"#;
    let response = daemon
        .post(
            "/v1/logs",
            "application/json",
            false,
            body.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer, serde_json::json!({}));
    let flow = daemon.flow("order-77", 1);
    let [record] = flow.as_slice() else {
        panic!("one record: {flow:?}")
    };
    assert_eq!(record.service, "inventory");
    assert_eq!(record.message, "out of stock");
    assert_eq!(record.level, causeway_model::Level::Error);
    assert_eq!(
        record.trace_id.unwrap().to_string(),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(record.attributes["sku"], 4711);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_body_with_a_bad_span_is_a_partial_success() {
    let daemon = start(1 << 20).await;
    let good = span([0x21; 16], 1, SpanKind::Server, "GET /orders");
    let mut bad = span([0x21; 16], 2, SpanKind::Internal, "bad");
    bad.trace_id = vec![1, 2, 3];
    let request = export("order", vec![good, bad]);
    let response = daemon
        .post(
            "/v1/traces",
            "application/x-protobuf",
            true,
            gzip(&request.encode_to_vec()),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = body.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace_id is 3 bytes"),
        "{}",
        partial.error_message
    );
    let flow = daemon.flow(&key([0x21; 16]), 1);
    assert_eq!(flow.len(), 1);
    assert_eq!(flow[0].message, "GET /orders");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_a_google_rpc_status_and_a_zip_bomb_gets_413() {
    let daemon = start(64 * 1024).await;
    // 10 MiB of zeros in about 10 KiB: inflated only up to the limit.
    let bomb = gzip(&vec![0u8; 10 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let response = daemon
        .post("/v1/traces", "application/x-protobuf", true, bomb)
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert!(
        status.message.contains("inflates past 65536 bytes"),
        "{}",
        status.message
    );

    let response = daemon
        .post(
            "/v1/logs",
            "application/json",
            false,
            b"{\"resourceLogs\":7}".to_vec(),
        )
        .await;
    assert_eq!(response.status(), 400);
    let status: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status["code"], 3);
    assert!(
        !status
            .to_string()
            .contains(daemon.config.data_dir.to_str().unwrap())
    );

    let response = daemon
        .post("/v1/traces", "text/plain", false, b"hello".to_vec())
        .await;
    assert_eq!(response.status(), 415);
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert!(
        status.message.contains("application/x-protobuf"),
        "{}",
        status.message
    );

    let response = daemon
        .post(
            "/v1/traces",
            "application/x-protobuf",
            false,
            vec![0; 65 * 1024],
        )
        .await;
    assert_eq!(response.status(), 413);
    assert!(RpcStatus::decode(response.bytes().await.unwrap()).is_ok());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exports_plain_and_gzip_reach_the_index() {
    let daemon = start(64 * 1024).await;
    let [send, process] = producer_and_consumer([0x31; 16], [0x32; 16]);
    let mut traces = TraceServiceClient::connect(daemon.grpc.clone())
        .await
        .unwrap();
    traces.export(export("order", vec![send])).await.unwrap();
    let mut zipped = TraceServiceClient::connect(daemon.grpc.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let answer = zipped
        .export(export("payment", vec![process]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);

    let mut logs = LogsServiceClient::connect(daemon.grpc.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let log = LogRecord {
        trace_id: vec![0x31; 16],
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue("order accepted".into())),
        }),
        ..LogRecord::default()
    };
    let bad = LogRecord {
        span_id: vec![1],
        ..LogRecord::default()
    };
    let answer: ExportLogsServiceResponse = logs
        .export(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource("order"),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![log, bad],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success.unwrap().rejected_log_records, 1);

    let flow = daemon.flow(&key([0x31; 16]), 4);
    assert_eq!(
        stages(&flow),
        [
            Stage::Published,
            Stage::Received,
            Stage::Handled,
            Stage::Log
        ],
        "{flow:?}"
    );

    // A message that inflates past the limit: refused, not inflated whole.
    let mut huge = span([0x33; 16], 1, SpanKind::Internal, "huge");
    huge.name = "x".repeat(200 * 1024);
    let refused = zipped
        .export(export("order", vec![huge]))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_sent_again_is_indexed_once_over_http_and_grpc_and_after_a_restart() {
    let daemon = start(1 << 20).await;
    let [send, process] = producer_and_consumer([0x41; 16], [0x42; 16]);
    let traces = export("order", vec![send, process]);
    let log = LogRecord {
        trace_id: vec![0x41; 16],
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue("order accepted".into())),
        }),
        ..LogRecord::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("order"),
            scope_logs: vec![ScopeLogs {
                // Two equal log records are two records: their place tells.
                log_records: vec![log.clone(), log],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let post_both = |daemon: &Daemon| {
        let (traces, logs) = (traces.encode_to_vec(), logs.encode_to_vec());
        let http = daemon.http.clone();
        async move {
            let client = reqwest::Client::new();
            for (path, body) in [("/v1/traces", traces), ("/v1/logs", logs)] {
                let response = client
                    .post(format!("{http}{path}"))
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    };
    // published, received, handled, and the two log records.
    const RECORDS: usize = 5;
    post_both(&daemon).await;
    assert_eq!(daemon.flow(&key([0x41; 16]), RECORDS).len(), RECORDS);

    // The SDK sends both again (its answer was lost), over HTTP, then
    // over gRPC.
    post_both(&daemon).await;
    assert_eq!(daemon.duplicates(RECORDS as u64).await, RECORDS as u64);
    let mut grpc_traces = TraceServiceClient::connect(daemon.grpc.clone())
        .await
        .unwrap();
    grpc_traces.export(traces.clone()).await.unwrap();
    let mut grpc_logs = LogsServiceClient::connect(daemon.grpc.clone())
        .await
        .unwrap();
    grpc_logs.export(logs.clone()).await.unwrap();
    assert_eq!(
        daemon.duplicates(2 * RECORDS as u64).await,
        2 * RECORDS as u64
    );
    assert_eq!(daemon.flow(&key([0x41; 16]), RECORDS).len(), RECORDS);

    // And again to a collector started afresh on the same data (it
    // stopped cleanly, so its last commit covers the batches it dropped
    // whole and it has nothing to read again: the count is the new one's).
    let dir = daemon.stop().await;
    let daemon = start_in(dir, 1 << 20).await;
    post_both(&daemon).await;
    assert_eq!(daemon.duplicates(RECORDS as u64).await, RECORDS as u64);
    assert_eq!(daemon.flow(&key([0x41; 16]), RECORDS).len(), RECORDS);
    daemon.stop().await;
}
