//! OTLP ingest, as the OpenTelemetry specification defines it: OTLP/HTTP
//! `POST /v1/traces` and `POST /v1/logs` (protobuf or JSON, optionally
//! gzip) on the collector's HTTP listener, and the OTLP/gRPC
//! `TraceService` and `LogsService` on its gRPC listener. Both end in the
//! same [`Indexer::ingest`](crate::indexer::Indexer) as the native batch
//! format, so an OTLP export is acknowledged after the same commit.
//!
//! `map` turns spans and log records into records (pure), `decode` reads a
//! body within its limits (pure), `ingest` is what both protocols share
//! (map off the async workers, then index), `http` and `grpc` are the two
//! protocols' answers. This module only declares and re-exports.

mod decode;
mod grpc;
mod http;
mod ingest;
mod map;

pub(crate) use decode::{DecodeError, gunzip};
pub(crate) use grpc::router as grpc_router;
pub(crate) use http::{logs as http_logs, traces as http_traces};
pub(crate) use ingest::Otlp;
