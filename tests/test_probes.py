"""The probe port (issue #34 item 5): loopback by default, malformed requests answered 4xx, stalled
clients neither hold a thread for long nor keep the probes from answering."""

from __future__ import annotations

import inspect
import socket
import threading
import time

from streetscan import cli
from streetscan.infra.metrics import Metrics
from streetscan.infra.probes import MAX_WORKERS, READ_TIMEOUT_S, MetricsServer


def server() -> MetricsServer:
    s = MetricsServer(
        Metrics(),
        "127.0.0.1",
        0,
        health=lambda: (True, {}),
        ready=lambda: (True, {}),
        verification=lambda method, path, headers, body: (202, {"status": "accepted"}),
    )
    s.start()
    return s


def raw(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_the_probe_port_listens_on_loopback_unless_told_otherwise():
    default = inspect.signature(cli.run).parameters["metrics_host"].default
    assert default == "127.0.0.1"


def test_a_malformed_content_length_is_a_400_not_a_traceback_or_a_hang():
    s = server()
    try:
        for value in (b"abc", b"-1", b"1e3"):
            t0 = time.monotonic()
            reply = raw(s.port, b"POST /verify HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n")
            assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400"), reply[:80]
            assert time.monotonic() - t0 < READ_TIMEOUT_S
    finally:
        s.stop()


def test_stalled_clients_are_dropped_and_cannot_starve_the_probes():
    s = server()
    stalled = []
    threads_before = threading.active_count()
    try:
        for _ in range(3 * MAX_WORKERS):  # each sends half a request and waits
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            sock.sendall(b"POST /verify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            stalled.append(sock)
        time.sleep(0.5)
        # Not one thread per client: at most a handler and its deadline timer per answered request.
        assert threading.active_count() <= threads_before + 2 * MAX_WORKERS < threads_before + 3 * MAX_WORKERS
        # Beyond the pool, a request is turned away at once; within READ_TIMEOUT_S the stalled
        # ones are dropped and the probe answers again.
        t0 = time.monotonic()
        while True:
            reply = raw(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=READ_TIMEOUT_S + 5)
            if b" 200 " in reply.split(b"\r\n", 1)[0]:
                break
            assert b" 503 " in reply.split(b"\r\n", 1)[0], reply[:80]
            assert time.monotonic() - t0 < 3 * READ_TIMEOUT_S, "probe still refused after the stalled clients' timeout"
            time.sleep(0.5)
        assert time.monotonic() - t0 < 3 * READ_TIMEOUT_S
        for sock in stalled:  # the server let go of every one: reading gives an answer, EOF or a reset
            sock.settimeout(READ_TIMEOUT_S + 3)
            try:
                sock.recv(4096)
            except ConnectionResetError:
                pass
    finally:
        for sock in stalled:
            sock.close()
        s.stop()


def test_clients_that_trickle_a_header_every_few_seconds_cannot_hold_the_probes():
    # Each read gets READ_TIMEOUT_S; a header line every 2 s never trips that. The whole request
    # must arrive within READ_TIMEOUT_S, or the connection is closed and its slot freed.
    s = server()
    stop = threading.Event()

    def trickle():
        try:
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                while not stop.is_set():
                    sock.sendall(b"X-Slow: 1\r\n")
                    stop.wait(2.0)
        except OSError:
            pass

    workers = [threading.Thread(target=trickle, daemon=True) for _ in range(MAX_WORKERS)]
    try:
        for w in workers:
            w.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        while b" 200 " not in raw(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").split(b"\r\n", 1)[0]:
            assert time.monotonic() - t0 < 3 * READ_TIMEOUT_S, "the probe stayed refused while clients trickled"
            time.sleep(0.5)
    finally:
        stop.set()
        s.stop()
