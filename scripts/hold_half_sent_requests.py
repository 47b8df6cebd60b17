"""Holds N half-sent requests against a causeway daemon, the way a slow or
hostile client would, and times /healthz while they are held and after the
daemon's header read timeout has closed them.

    causeway up --data-dir /tmp/d --collector-http-addr 127.0.0.1:14318 \
        --query-addr 127.0.0.1:18686 &     # under `ulimit -n 1024` to see fds
    python3 scripts/hold_half_sent_requests.py 14318 2000

Before the limits existed, 1,100 held requests filled the file-descriptor
table and every client timed out; see ARCHITECTURE.md, `server`.
"""

import socket
import sys
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"


def healthz(port: int, label: str) -> None:
    started = time.time()
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=5) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as error:
        print(f"{label}: no answer ({error}) after {(time.time() - started) * 1000:.0f} ms")
        return
    print(f"{label}: {status} in {(time.time() - started) * 1000:.1f} ms {body[:120]!r}")


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    held, failed = [], 0
    for _ in range(count):
        try:
            connection = socket.create_connection((HOST, port), timeout=2)
            connection.sendall(b"POST /v1/ingest HTTP/1.1\r\nhost: x\r\ncontent-le")
            held.append(connection)
        except OSError:
            failed += 1
    time.sleep(0.5)
    healthz(port, "healthz while held")
    time.sleep(11)  # past the default 10 s header read timeout
    healthz(port, "healthz after the header timeout")
    closed = 0
    for connection in held:
        connection.settimeout(0.01)
        try:
            if connection.recv(1) == b"":
                closed += 1
        except socket.timeout:
            pass
        except OSError:
            closed += 1
    print(f"opened {len(held)}, failed to connect {failed}, half-sent ones closed by the daemon: {closed}")


if __name__ == "__main__":
    main()
