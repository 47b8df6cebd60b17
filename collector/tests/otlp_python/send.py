"""Sends spans and log records to causeway with Python's stock OpenTelemetry
SDK and OTLP exporters, as a service instrumented with plain OpenTelemetry
(no causeway middleware) would.

Three services, each with its own tracer and logger provider:

- ``py-order`` publishes an order (a PRODUCER span ``send orders``) and logs
  "order placed" inside it; it exports over OTLP/HTTP protobuf, gzip.
- ``py-payment`` handles it in a CONSUMER span ``process orders`` that starts
  a trace of its own and links to the producer's span (the link names the
  message id), with a child span ``charge card`` and a log "card charged";
  it exports over OTLP/gRPC, gzip.
- ``py-audit`` handles it too and fails (an exception), over OTLP/gRPC,
  uncompressed.

Usage: send.py HTTP_URL GRPC_URL RUN_ID. Prints one JSON object with the
trace ids it made, for the test to look up. Exits non-zero if an export
did not succeed.
"""

import json
import logging
import sys

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind

import grpc


class Checked:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, name, exporter):
        self.name = name
        self.exporter = exporter
        self.failures = 0
        self.exports = 0

    def export(self, batch):
        result = self.exporter.export(batch)
        self.exports += 1
        # SpanExportResult or LogRecordExportResult: both name it SUCCESS.
        if getattr(result, "name", "") != "SUCCESS":
            self.failures += 1
            print(f"{self.name}: export failed: {result}", file=sys.stderr)
        return result

    def shutdown(self):
        self.exporter.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def service(name, span_exporter, log_exporter):
    """A tracer and a logger for one service, and what to close at the end."""
    resource = Resource.create({"service.name": name, "service.instance.id": f"{name}-1"})
    spans = Checked(f"{name} spans", span_exporter)
    logs = Checked(f"{name} logs", log_exporter)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    tracer = tracer_provider.get_tracer(f"{name}.tracer")
    return tracer, logger, (tracer_provider, logger_provider), (spans, logs)


def main():
    http_url, grpc_url, run_id = sys.argv[1:4]
    message_id = f"{run_id}-msg-1"

    order, order_log, order_providers, order_checks = service(
        "py-order",
        HttpSpanExporter(endpoint=f"{http_url}/v1/traces", compression=HttpCompression.Gzip),
        HttpLogExporter(endpoint=f"{http_url}/v1/logs", compression=HttpCompression.Gzip),
    )
    payment, payment_log, payment_providers, payment_checks = service(
        "py-payment",
        GrpcSpanExporter(endpoint=grpc_url, insecure=True, compression=grpc.Compression.Gzip),
        GrpcLogExporter(endpoint=grpc_url, insecure=True, compression=grpc.Compression.Gzip),
    )
    audit, _, audit_providers, audit_checks = service(
        "py-audit",
        GrpcSpanExporter(endpoint=grpc_url, insecure=True),
        GrpcLogExporter(endpoint=grpc_url, insecure=True),
    )

    with order.start_as_current_span(
        "send orders",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.destination.name": "orders",
            "messaging.operation.type": "send",
            "messaging.message.id": message_id,
            "order.id": run_id,
        },
    ) as send:
        order_log.info("order placed")
    producer = send.get_span_context()
    link = Link(producer, attributes={"messaging.message.id": message_id})

    # A consumer that starts a trace of its own (an empty context: no
    # parent), linked to the producer.
    with payment.start_as_current_span(
        "process orders",
        context=Context(),
        kind=SpanKind.CONSUMER,
        links=[link],
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.destination.name": "orders",
            "messaging.consumer.group.name": "payment",
            "messaging.operation.type": "process",
        },
    ) as process:
        with payment.start_as_current_span("charge card", attributes={"card.brand": "visa"}):
            payment_log.warning("card charged")
    consumer = process.get_span_context()

    try:
        with audit.start_as_current_span(
            "process orders",
            context=Context(),
            kind=SpanKind.CONSUMER,
            links=[link],
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": "orders",
                "messaging.consumer.group.name": "audit",
                "messaging.operation.type": "process",
            },
        ) as failing:
            raise ValueError("audit log is full")
    except ValueError:
        pass
    failed = failing.get_span_context()

    for tracer_provider, logger_provider in (order_providers, payment_providers, audit_providers):
        tracer_provider.shutdown()
        logger_provider.shutdown()

    # py-audit writes no log record, so its log exporter has nothing to send.
    checks = [*order_checks, *payment_checks, audit_checks[0]]
    for check in checks:
        if check.exports == 0:
            print(f"{check.name}: nothing was exported", file=sys.stderr)
    if any(check.failures or check.exports == 0 for check in checks):
        return 1
    print(
        json.dumps(
            {
                "producer_trace": format(producer.trace_id, "032x"),
                "consumer_trace": format(consumer.trace_id, "032x"),
                "failed_trace": format(failed.trace_id, "032x"),
                "message_id": message_id,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
