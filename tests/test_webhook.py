"""The webhook sink against a real HTTP(S) receiver in its own process (tests/webhook_receiver.py):
transient failures are retried in order, a receiver restart loses nothing, keys never double,
refused events become dead letters that the CLI lists and re-sends, TLS is verified, and the
secret stays secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import encode_clip
from marker_model import red_marker
from realparts import free_port, wait_for
from test_console_security import event

from streetscan.delivery.emitter import EventEmitter
from streetscan.delivery.sinks import EventRejected, SinkError
from streetscan.delivery.spool import EventSpool
from streetscan.delivery.webhook import WebhookConfigError, WebhookSink, load_secret, sign, signature_ok
from streetscan.infra.metrics import Metrics
from streetscan.pipeline.events import Event

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
SECRET = b"a shared secret of the case platform"


_RUNNING: list = []


@pytest.fixture(autouse=True)
def _no_receiver_left():
    """A test failing before its own cleanup (between starting a receiver and its try) still ends
    the receiver's process."""
    yield
    while _RUNNING:
        _RUNNING.pop().kill()


class Receiver:
    def __init__(self, tmp: Path, port: int | None = None, *args: str):
        self.port = port or free_port()
        self.log = tmp / f"received-{self.port}.jsonl"
        self.secret_file = tmp / "secret"
        self.secret_file.write_bytes(SECRET)
        self.args = args
        self.proc = None
        self.scheme = "https" if "--tls-cert" in args else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/cases?token=not-for-logs"

    def start(self, *args: str) -> Receiver:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "webhook_receiver.py"),
                "--port",
                str(self.port),
                "--secret-file",
                str(self.secret_file),
                "--log",
                str(self.log),
                *(args or self.args),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        _RUNNING.append(self)  # killed after the test whatever it does in between (_no_receiver_left)
        assert self.proc.stdout.readline().startswith("READY")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def accepted(self) -> list[str]:
        return [r["key"] for r in self.records() if r["status"] == 200 and not r["duplicate"]]


def commit(spool: EventSpool, events: list[dict]) -> None:
    for ev in events:
        spool.commit(ev["camera"]["id"], [Event.from_dict(ev)], None)


def key(ev: dict) -> str:
    return f"{ev['event_id']}:{ev['revision']}"


def test_transient_failures_and_a_receiver_restart_lose_nothing_and_double_nothing(tmp_path):
    receiver = Receiver(tmp_path).start("--script", "503,503,429,slow,500,408", "--slow-s", "2.5")
    sink = WebhookSink(receiver.url, SECRET, timeout_s=1.0)
    spool = EventSpool(tmp_path / "spool.db", [sink.name])
    metrics = Metrics()
    emitter = EventEmitter(spool, [sink], metrics, backoff_initial_s=0.05, backoff_max_s=0.5)
    first = [event(i, camera=f"cam-{i % 3}") for i in range(18)]
    commit(spool, first)
    emitter.start()
    try:
        wait_for(lambda: len(receiver.accepted()) >= 8, 30, what="the first deliveries")
        receiver.kill()  # the platform restarts mid-run
        second = [event(100 + i, camera=f"cam-{i % 3}") for i in range(9)]
        commit(spool, second)
        wait_for(lambda: not emitter.sink_ok[sink.name], 10, what="the outage noticed")
        assert spool.depth() > 0  # waiting in the spool, not lost
        receiver.start("--script", "")
        wait_for(lambda: spool.depth() == 0, 30, what="the backlog delivered")
    finally:
        emitter.stop()
        emitter.join(5)
        receiver.kill()
    records = receiver.records()
    assert all(r["signature_ok"] for r in records)
    expected = [key(e) for e in first + second]
    accepted = receiver.accepted()
    assert sorted(accepted) == sorted(expected)  # every revision arrived, once by key
    for cam in ("cam-0", "cam-1", "cam-2"):  # and in order per camera
        order = [key(e) for e in first + second if e["camera"]["id"] == cam]
        assert [k for k in accepted if k in order] == order
    # Only the request the sink gave up on (slow answer) may have reached the receiver twice.
    assert sum(r["duplicate"] for r in records) <= 1
    assert metrics.registry.get_sample_value("streetscan_sink_errors_total", {"sink": sink.name}) >= 6
    assert "token" not in sink.name and "not-for-logs" not in sink.name


def test_a_refused_event_is_a_dead_letter_listed_and_resent_by_the_cli(tmp_path):
    receiver = Receiver(tmp_path).start("--reject-camera", "cam-1")
    sink = WebhookSink(receiver.url, SECRET, timeout_s=5.0)
    spool = EventSpool(tmp_path / "spool.db", [sink.name])
    metrics = Metrics()
    events = [event(i, camera=f"cam-{i % 3}") for i in range(9)]
    commit(spool, events)
    emitter = EventEmitter(spool, [sink], metrics, backoff_initial_s=0.05)
    while emitter.deliver(force=True):
        pass
    assert spool.depth() == 0  # refused events do not block the others
    rejected = [key(e) for e in events if e["camera"]["id"] == "cam-1"]
    assert [f"{d.event_id}:{d.revision}" for d in spool.dead_letters()] == rejected
    assert all("HTTP 422" in d.reason for d in spool.dead_letters())
    assert metrics.registry.get_sample_value("streetscan_sink_dead_letters_total", {"sink": sink.name}) == 3
    assert sorted(receiver.accepted()) == sorted(key(e) for e in events if e["camera"]["id"] != "cam-1")
    spool.close()

    env = {**os.environ, "STREETSCAN_WEBHOOK_SECRET": SECRET.decode(), "COLUMNS": "300"}
    cli = [sys.executable, "-m", "streetscan", "dead-letters"]
    listed = subprocess.run(
        [*cli, "list", "--spool", str(tmp_path / "spool.db")], capture_output=True, text=True, env=env, timeout=60
    )
    assert listed.returncode == 0 and all(k in listed.stdout for k in rejected), listed.stdout + listed.stderr
    still = subprocess.run(
        [*cli, "resend", "--spool", str(tmp_path / "spool.db"), "--webhook", receiver.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert still.returncode == 1 and "refused again" in still.stderr  # the receiver still refuses them
    receiver.kill()
    receiver.start("--script", "")  # the platform fixed its side
    resent = subprocess.run(
        [*cli, "resend", "--spool", str(tmp_path / "spool.db"), "--webhook", receiver.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    receiver.kill()
    assert resent.returncode == 0 and "3 of 3 re-sent" in resent.stdout, resent.stdout + resent.stderr
    assert EventSpool(tmp_path / "spool.db", [], maintenance=True).dead_letters() == []
    assert sorted(receiver.accepted()) == sorted(key(e) for e in events)
    assert SECRET.decode() not in listed.stdout + still.stdout + still.stderr + resent.stdout + resent.stderr


def test_tls_is_verified_unless_the_platforms_ca_is_given(tmp_path):
    cert, pkey = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(pkey),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    receiver = Receiver(tmp_path, None, "--tls-cert", str(cert), "--tls-key", str(pkey)).start()
    try:
        with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            WebhookSink(receiver.url, SECRET).emit(event(1))
        WebhookSink(receiver.url, SECRET, ca_file=cert).emit(event(1))
    finally:
        receiver.kill()
    assert receiver.accepted() == [key(event(1))]


def test_signature_secret_and_refusals(tmp_path, monkeypatch):
    body, ts = b'{"a":1}', str(int(time.time()))
    headers = {"X-StreetScan-Timestamp": ts, "X-StreetScan-Signature": sign(SECRET, ts, body)}
    assert signature_ok(SECRET, headers, body)
    assert not signature_ok(SECRET, headers, b'{"a":2}')  # tampered body
    assert not signature_ok(b"another secret entirely!", headers, body)  # wrong secret
    assert not signature_ok(SECRET, headers, body, now=time.time() + 3600)  # replayed an hour later
    monkeypatch.delenv("STREETSCAN_WEBHOOK_SECRET", raising=False)
    with pytest.raises(WebhookConfigError, match="needs a shared secret"):
        load_secret(None)
    monkeypatch.setenv("STREETSCAN_WEBHOOK_SECRET", "short")
    with pytest.raises(WebhookConfigError, match="at least 16"):
        load_secret(None)
    with pytest.raises(WebhookConfigError, match="no-such-file"):
        load_secret(tmp_path / "no-such-file")
    # A receiver with another secret answers 401: refused for good, and the error shows no secret.
    receiver = Receiver(tmp_path).start()
    try:
        with pytest.raises(EventRejected) as refused:
            WebhookSink(receiver.url, b"not the platform's secret at all").emit(event(2))
    finally:
        receiver.kill()
    assert "HTTP 401" in str(refused.value) and "secret" not in str(refused.value)
    cli = subprocess.run(
        [sys.executable, "-m", "streetscan", "replay", str(HERE / "conftest.py"), "--webhook", "http://x/"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300", "STREETSCAN_WEBHOOK_SECRET": ""},
    )
    assert cli.returncode == 2 and "needs a shared secret" in cli.stderr, cli.stderr


def test_replay_delivers_every_event_to_the_webhook(tmp_path, marker_model):
    clip = encode_clip(tmp_path / "parked.mp4", seconds=12, scene=red_marker(present=lambda t: 1.0 <= t <= 8.0))
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 4,
                    "event": {"update_interval_s": 1, "resolve_grace_s": 2},
                    "rules": {"illegal_parking": {"dwell_s": 1.5}},
                },
                "cameras": [{"id": "kerb", "name": "kerb", "url": "parked.mp4", "location": {"address": "test road"}}],
            }
        )
    )
    receiver = Receiver(tmp_path).start("--script", "503")
    out = tmp_path / "out"
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "streetscan",
                "replay",
                str(clip),
                "--model",
                str(marker_model),
                "--streams",
                str(streams),
                "--out",
                str(out),
                "--webhook",
                receiver.url,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "STREETSCAN_WEBHOOK_SECRET": SECRET.decode(), "COLUMNS": "200"},
        )
    finally:
        receiver.kill()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {e["state"] for e in written} == {"opened", "updated", "resolved"}
    assert receiver.accepted() == [key(e) for e in written]
    assert SECRET.decode() not in proc.stdout + proc.stderr
