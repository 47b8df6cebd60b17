"""Places an order from outside Rust: a foreign client of the orders saga.

It publishes one `OrderPlaced` to the saga's RabbitMQ topic exchange with
pika, in a W3C trace of its own (a `traceparent` it makes itself), as the
contract in examples/README.md says, and prints the trace id. The Rust
services take the order from there, and their records join that trace.

    python place_order.py AMQP_URL EXCHANGE ORDER_ID
"""

import json
import secrets
import sys

import pika


def main() -> None:
    url, exchange, order_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    trace_id = secrets.token_hex(16)
    span_id = secrets.token_hex(8)
    body = {"order_id": order_id, "amount_cents": 1_250, "items": 2}
    properties = pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        # The context: W3C trace context, and the business id as the
        # correlation id (AMQP's own property).
        headers={"traceparent": f"00-{trace_id}-{span_id}-01"},
        correlation_id=f"order-{order_id}",
        message_id=f"py-{secrets.token_hex(8)}",
        type="OrderPlaced",
        app_id="python-shop",
    )
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(
        exchange=exchange,
        routing_key="orders.placed",
        body=json.dumps(body).encode(),
        properties=properties,
        mandatory=True,
    )
    connection.close()
    print(trace_id)


if __name__ == "__main__":
    main()
