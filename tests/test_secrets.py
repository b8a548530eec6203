"""No secret leaves the process (issue #34, items 1 and 3): camera passwords (with '@', ':' and
%-escapes in them) and webhook query tokens, planted, then looked for in the daemon's log, its
unauthenticated probes and metrics, and in what a third-party library logs."""

from __future__ import annotations

import io
import logging
import re

import httpx
import pytest
import yaml
from marker_model import red_marker
from realparts import DaemonProcess, RtspServer, encode_clip, free_port, wait_for

from streetscan.console.app import ConsoleSettings
from streetscan.console.users import UserStore
from streetscan.logs import JsonFormatter
from streetscan.secrets import MASK, RedactingFilter, redact, redact_url, remember

# Passwords as operators write them: a raw '@' (so "user:pass@host" has two '@'), a ':', and
# %-escaped '@' and ':' (the URL-correct spelling of the same characters).
RAW_AT = "Pw-Secret-AT@"
ESCAPED = "S3cr%40t%3Axy"
TOKEN = "Tok-SECRET-4711"


def test_a_url_keeps_its_user_and_host_and_loses_its_password_and_query_values():
    assert redact_url(f"rtsp://admin:{RAW_AT}@10.0.0.5:554/ch1") == "rtsp://admin:***@10.0.0.5:554/ch1"
    assert redact_url(f"rtsp://admin:{ESCAPED}@cam.local/live") == "rtsp://admin:***@cam.local/live"
    assert redact_url("redis://:redis-pass@[::1]:6379/0") == "redis://:***@[::1]:6379/0"
    assert redact_url(f"https://platform/hook?token={TOKEN}&v=2") == "https://platform/hook?token=***&v=***"
    assert redact_url("rtsp://admin:Hik12345@nvr_gate1:554/ch1") == "rtsp://admin:***@nvr_gate1:554/ch1"
    assert redact_url("rtsp://admin:pw-12345@摄像头.local/live") == "rtsp://admin:***@摄像头.local/live"
    assert redact_url("rtsp://viewer@cam/live") == "rtsp://viewer@cam/live"  # no password: nothing hidden
    assert redact_url("footage/clip.mp4") == "footage/clip.mp4"


def test_every_spelling_of_a_remembered_secret_is_masked_in_any_text():
    remember(f"rtsp://admin:{RAW_AT}@10.0.0.5/ch1")
    remember(f"rtsp://admin:{ESCAPED}@10.0.0.6/ch1")
    remember(f"http://127.0.0.1:9/hook?token={TOKEN}")
    text = (
        f"open failed: rtsp://admin:{RAW_AT}@10.0.0.5/ch1 [{RAW_AT}] S3cr@t:xy {ESCAPED} "
        f"POST http://127.0.0.1:9/hook?token={TOKEN} token={TOKEN}"
    )
    out = redact(text)
    for secret in (RAW_AT, "Pw-Secret-AT", ESCAPED, "S3cr@t:xy", TOKEN):
        assert secret not in out, out
    assert MASK in out and "10.0.0.5/ch1" in out  # where it failed still reads
    remember("rtsp://admin:123456@10.0.0.8/ch1")  # a common password must not eat the digits of numbers
    assert redact("frames 1234567.0 age 0.123456 pw 123456") == "frames 1234567.0 age 0.123456 pw ***"


def test_a_third_party_log_record_and_its_traceback_are_redacted_for_both_formats():
    remember(f"rtsp://admin:{RAW_AT}@10.0.0.7/ch1")
    for formatter in (logging.Formatter("%(name)s %(message)s"), JsonFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RedactingFilter())
        handler.setFormatter(formatter)
        lib = logging.getLogger("somelibrary.transport")
        lib.addHandler(handler)
        lib.propagate = False
        try:
            lib.warning("dialling %s", f"rtsp://admin:{RAW_AT}@10.0.0.7/ch1")
            try:
                raise ConnectionError(f"refused by rtsp://admin:{RAW_AT}@10.0.0.7/ch1")
            except ConnectionError:
                lib.exception("connect failed")
        finally:
            lib.removeHandler(handler)
        out = stream.getvalue()
        assert RAW_AT not in out and "Pw-Secret-AT" not in out, out
        assert "ConnectionError" in out and "10.0.0.7/ch1" in out


@pytest.mark.integration
@pytest.mark.usefixtures("rtsp_ready")
def test_camera_passwords_and_webhook_tokens_appear_in_no_log_probe_metric_or_event(tmp_path, marker_model):
    # Two cameras that cannot be dialled (nothing listens on their port): FFmpeg's errors quote the
    # URL. One live camera whose parked marker opens a case, delivered to a webhook with a query
    # token (httpx logs every request's URL at INFO, which `run` enables).
    from test_webhook import SECRET, Receiver

    clip = encode_clip(tmp_path / "parked.mp4", seconds=60, gop=25, scene=red_marker(present=lambda t: t >= 1.0))
    dead = free_port()
    server = RtspServer({"live": clip}).start()
    receiver = Receiver(tmp_path).start()
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 4,
                    "reader": {"open_timeout_s": 2, "backoff_initial_s": 0.3, "backoff_max_s": 2},
                    "rules": {"illegal_parking": {"dwell_s": 1.5}},
                },
                "cameras": [
                    {
                        "id": "raw-at",
                        "name": "raw @",
                        "location": {"address": "x"},
                        "url": f"rtsp://admin:{RAW_AT}@127.0.0.1:{dead}/ch1",
                    },
                    {
                        "id": "escaped",
                        "name": "escaped",
                        "location": {"address": "x"},
                        "url": f"rtsp://admin:{ESCAPED}@127.0.0.1:{dead}/ch2",
                    },
                    {"id": "live", "name": "live", "location": {"address": "x"}, "url": server.url("live")},
                ],
            }
        ),
        encoding="utf-8",
    )
    secret_file = tmp_path / "hook-secret"
    secret_file.write_bytes(SECRET)
    UserStore(ConsoleSettings.for_output(tmp_path / "out").users_path).add("chief", "a-long-password", "admin")
    console_port = free_port()
    daemon = DaemonProcess(
        streams,
        tmp_path / "out",
        marker_model,
        "--jsonl",
        "--webhook",
        f"{receiver.url}?token={TOKEN}",
        "--webhook-secret-file",
        str(secret_file),
        "--http-port",
        str(console_port),
    ).start()
    try:
        wait_for(
            lambda: daemon.camera_state("raw-at") == "backoff" and daemon.camera_state("escaped") == "backoff",
            60,
            what="both dead cameras failing to dial",
        )
        wait_for(lambda: receiver.accepted(), 90, what="a case delivered to the webhook")
        pages = {path: daemon.get(path)[1] for path in ("/readyz", "/healthz", "/metrics")}
        with httpx.Client(base_url=f"http://127.0.0.1:{console_port}") as console:  # what a viewer sees
            csrf = re.search(r'name="csrf" value="([^"]+)"', console.get("/login").text).group(1)
            assert (
                console.post("/login", data={"name": "chief", "password": "a-long-password", "csrf": csrf}).status_code
                == 303
            )
            for path in ("/cameras", "/overview", "/cases", "/cases.csv"):
                page = console.get(path)
                assert page.status_code == 200, path
                pages[f"console {path}"] = page.text
        assert "127.0.0.1" in pages["console /cameras"]  # the failing cameras' reasons are shown
    finally:
        daemon.stop()
        receiver.kill()
        server.kill()
    assert "raw-at" in pages["/readyz"] and "127.0.0.1" in pages["/readyz"], pages["/readyz"]
    texts = {"log": daemon.log_text(), **pages, **{str(p): p.read_text() for p in (tmp_path / "out").glob("*.jsonl")}}
    assert "HTTP Request" in texts["log"]  # httpx logged the delivery: its line is among those checked
    for where, text in texts.items():
        for secret in (RAW_AT, "Pw-Secret-AT", ESCAPED, "S3cr@t:xy", TOKEN):
            assert secret not in text, f"{secret!r} leaked in {where}"
