"""The operator console in a real browser (Debian's Chromium through chromedriver), served by the
live daemon (`streetscan run --http-port`) watching a real RTSP camera with a real ONNX model.

The tests log in, filter cases, open one and see its evidence load, dismiss it, look at the
cameras page, draw a zone on the camera's picture and save it (the daemon reloads; a crossing
polygon shows its error), and check that a viewer cannot edit zones. Each page is photographed:
into $STREETSCAN_SCREENSHOTS when set (the README's pictures), else into the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml
from conftest import encode_clip
from marker_model import red_marker
from realparts import REPO, DaemonProcess, RtspServer, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("rtsp_ready")]

PASSWORD = "console test password"
STREAMS = """\
# Console browser test fleet. This comment must survive the zone editor.
version: 1
defaults:
  analysis_fps: 4
  event: {update_interval_s: 2, resolve_grace_s: 3}
  reader: {backoff_initial_s: 0.3, backoff_max_s: 2.0, open_timeout_s: 5, read_timeout_s: 3, stall_timeout_s: 5}
  rules:
    illegal_parking: {dwell_s: 1.5}
cameras:
  - id: gate
    name: 城中路 东门
    url: URL
    location: {address: 上海市嘉定区城中路 88 号, lat: 31.38, lon: 121.25}
    zones:
      - id: kerb   # the whole kerb lane
        kind: no_parking
        grade: arterial
        polygon: [[0, 150], [640, 150], [640, 360], [0, 360]]
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory, marker_model):
    """The daemon with its console on one RTSP camera where a red 'car' stays parked."""
    tmp = tmp_path_factory.mktemp("console-live")
    clip = encode_clip(tmp / "parked.mp4", seconds=90, gop=25, scene=red_marker(present=lambda t: t >= 1.0))
    rtsp = RtspServer({"gate": clip}).start()
    streams = tmp / "streams.yaml"
    streams.write_text(STREAMS.replace("URL", rtsp.url("gate")), encoding="utf-8")
    out = tmp / "out"
    add_users(out)
    port = free_port()
    daemon = DaemonProcess(streams, out, marker_model, "--http-port", str(port)).start()
    try:
        wait_for(
            lambda: (
                (out / "snapshots" / "gate.jpg").is_file()
                and (out / "events.jsonl").is_file()
                and (out / "events.jsonl").stat().st_size > 0
            ),
            60,
            what="a case and a camera picture",
        )
        yield {"base": f"http://127.0.0.1:{port}", "out": out, "streams": streams, "daemon": daemon}
    finally:
        daemon.stop()
        rtsp.kill()


def add_users(out: Path) -> None:
    """The console's three roles, each with PASSWORD, through the CLI as an operator adds them."""
    for name, role in (("admin", "admin"), ("ops", "operator"), ("watcher", "viewer")):
        proc = subprocess.run(
            [sys.executable, "-m", "streetscan", "users", "add", name, "--role", role, "--out", str(out),
             "--password", PASSWORD],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr


def console_up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/login", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("STREETSCAN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def photograph(driver, folder: Path, name: str) -> Path:
    """A screenshot as a 1000-px-wide JPEG, so the README's pictures stay small."""
    png = driver.get_screenshot_as_png()
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.std() > 5, f"{name}: blank screenshot"
    scale = 1000 / img.shape[1]
    path = folder / f"{name}.jpg"
    cv2.imwrite(
        str(path),
        cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
        [cv2.IMWRITE_JPEG_QUALITY, 80],
    )
    return path


def log_in(driver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "submit").click()
    wait_for(lambda: "/login" not in driver.current_url, 10, what=f"{name} logged in")


def image_loaded(driver, element) -> bool:
    return bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element))


def test_operator_filters_opens_a_case_sees_its_evidence_and_dismisses_it(chromium, live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, base, shots = chromium, live["base"], shots_dir(tmp_path)
    driver.get(f"{base}/cases")
    assert "/login" in driver.current_url  # nothing without a session
    log_in(driver, base, "ops")
    driver.get(f"{base}/cases")
    Select(driver.find_element(By.NAME, "scene")).select_by_visible_text("illegal_parking")
    driver.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait_for(lambda: "scene=illegal_parking" in driver.current_url, 10, what="filtered list")
    rows = driver.find_elements(By.CSS_SELECTOR, "#cases tr.case")
    assert rows, driver.page_source
    assert all("illegal_parking" in r.text for r in rows)
    thumbs = driver.find_elements(By.CSS_SELECTOR, "#cases img.thumb")
    wait_for(lambda: all(image_loaded(driver, t) for t in thumbs), 10, what="thumbnails")
    photograph(driver, shots, "live-cases")

    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    for key in ("clean", "annotated"):
        img = driver.find_element(By.ID, f"evidence-{key}")
        wait_for(lambda img=img: image_loaded(driver, img), 10, what=f"{key} evidence image")
    event_id = driver.current_url.rsplit("/", 1)[1]
    driver.find_element(By.ID, "dismiss-reason").send_keys("红色标记板，不是车辆")
    driver.find_element(By.ID, "dismiss").click()
    wait_for(lambda: driver.find_elements(By.ID, "verdict"), 10, what="the verdict")
    assert driver.find_element(By.ID, "verdict").text == "已驳回"
    photograph(driver, shots, "live-case")

    # The dismissal is kept as a labelled example for the next model.
    driver.get(f"{base}/dismissed.jsonl")
    assert event_id in driver.page_source and "红色标记板" in driver.page_source


def test_admin_draws_a_zone_the_daemon_reloads_and_a_crossing_polygon_is_refused(chromium, live, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver, base, shots, streams = chromium, live["base"], shots_dir(tmp_path), live["streams"]
    log_in(driver, base, "admin")

    def live_on_page() -> bool:
        driver.get(f"{base}/cameras")
        return bool(driver.find_elements(By.CSS_SELECTOR, "#camera-gate.state-live"))

    wait_for(live_on_page, 30, what="the camera shown live")
    card = driver.find_element(By.ID, "camera-gate")
    assert "上海市嘉定区城中路 88 号" in card.text
    assert "解码: 全帧" in card.text  # 1 s keyframes for 4 analysed fps: every frame decoded
    snapshot = card.find_element(By.CSS_SELECTOR, "img.snapshot")
    wait_for(lambda: image_loaded(driver, snapshot), 10, what="the camera picture")
    assert card.find_elements(By.CSS_SELECTOR, "svg polygon.zone")  # its zone drawn on it
    photograph(driver, shots, "live-cameras")

    card.find_element(By.CSS_SELECTOR, "a.edit-zones").click()
    overlay = driver.find_element(By.ID, "overlay")

    def draw(zone_id: str, corners: list[tuple[float, float]]) -> None:
        """A new zone with corners given as fractions of the picture, clicked in this order."""
        driver.find_element(By.ID, "new-zone").click()
        field = driver.find_element(By.ID, "zone-id")
        field.clear()
        field.send_keys(zone_id, Keys.TAB)
        Select(driver.find_element(By.ID, "zone-kind")).select_by_visible_text("no_parking")
        w, h = overlay.size["width"], overlay.size["height"]
        for fx, fy in corners:  # offsets from the element's centre
            ActionChains(driver).move_to_element_with_offset(
                overlay, int((fx - 0.5) * w), int((fy - 0.5) * h)
            ).click().perform()
        driver.find_element(By.ID, "save-zones").click()

    reloads_before = live["daemon"].log_text().count("reloaded")
    draw("bay", [(0.1, 0.1), (0.4, 0.1), (0.4, 0.35), (0.1, 0.35)])
    wait_for(lambda: "已保存" in driver.find_element(By.ID, "saved").text, 10, what="the save confirmation")
    assert not driver.find_elements(By.CSS_SELECTOR, "#errors li")
    text = streams.read_text(encoding="utf-8")
    assert "This comment must survive the zone editor" in text and "# the whole kerb lane" in text
    zones = {z["id"]: z for z in yaml.safe_load(text)["cameras"][0]["zones"]}
    assert set(zones) == {"kerb", "bay"} and len(zones["bay"]["polygon"]) == 4
    xs = [p[0] for p in zones["bay"]["polygon"]]
    assert 30 <= min(xs) <= 100 and 220 <= max(xs) <= 290  # clicked at 10 % and 40 % of 640 px
    assert list(streams.parent.glob("streams.yaml.*.bak"))
    wait_for(lambda: live["daemon"].log_text().count("reloaded") > reloads_before, 20, what="the daemon's reload")
    assert "1 restarted" in live["daemon"].log_text()
    photograph(driver, shots, "live-zones")

    saved = streams.read_text(encoding="utf-8")
    draw("bowtie", [(0.6, 0.1), (0.9, 0.4), (0.9, 0.1), (0.6, 0.4)])
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#errors li"), 10, what="the error")
    error = driver.find_element(By.CSS_SELECTOR, "#errors li").text
    assert "zones[2].polygon" in error and "crosses itself" in error, error
    assert streams.read_text(encoding="utf-8") == saved  # an invalid file is never written
    photograph(driver, shots, "live-zones-error")

    driver.get(f"{base}/overview")
    for chart in driver.find_elements(By.CSS_SELECTOR, "img.chart"):
        wait_for(lambda chart=chart: image_loaded(driver, chart), 10, what="a chart")
    assert int(driver.find_element(By.ID, "total-cases").text) >= 1
    photograph(driver, shots, "live-overview")


def test_a_viewer_sees_cameras_but_cannot_edit_zones(chromium, live):
    from selenium.webdriver.common.by import By

    driver, base = chromium, live["base"]
    log_in(driver, base, "watcher")
    driver.get(f"{base}/cameras")
    assert driver.find_elements(By.ID, "camera-gate")
    assert not driver.find_elements(By.CSS_SELECTOR, "a.edit-zones")
    assert driver.find_element(By.ID, "nav-cameras").text == "摄像头"  # zh-CN by default
    driver.find_element(By.LINK_TEXT, "EN").click()
    wait_for(lambda: driver.find_element(By.ID, "nav-cameras").text == "Cameras", 10, what="the English switch")
    assert "/cameras" in driver.current_url
    driver.get(f"{base}/cameras/gate/zones")
    assert "needs the admin role" in driver.page_source
    assert not driver.find_elements(By.ID, "overlay")
    # The page's own script cannot save either: the API refuses a viewer with a valid CSRF token.
    status = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/cases').then(r => r.text()).then(html => {
          const csrf = html.match(/name="csrf" value="([^"]+)"/)[1];
          return fetch('/api/cameras/gate/zones', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': csrf}, body: JSON.stringify({zones: []})});
        }).then(r => done(r.status));""")
    assert status == 403


def test_a_camera_pairs_card_says_when_its_evidence_comes_from_the_substream(chromium, marker_model, tmp_path):
    """A camera pair (main stream 1280x720 for evidence, substream 640x360 for detection): its card
    shows the main stream live; when the main stream dies the camera stays live on its substream and
    the card says the main stream is down and that evidence now comes from the substream."""
    from selenium.webdriver.common.by import By
    from test_substream import pair_streams

    main_clip = encode_clip(tmp_path / "main.mp4", width=1280, height=720, seconds=60, gop=25,
                            scene=red_marker((520, 400, 760, 520)))  # fmt: skip
    sub_clip = encode_clip(tmp_path / "sub.mp4", seconds=60, gop=25, scene=red_marker())
    main_server, sub_server = RtspServer({"main": main_clip}).start(), RtspServer({"sub": sub_clip}).start()
    streams, out, port = pair_streams(tmp_path / "streams.yaml", main_server, sub_server), tmp_path / "out", free_port()
    add_users(out)
    daemon = DaemonProcess(streams, out, marker_model, "--http-port", str(port)).start()
    driver, base, shots = chromium, f"http://127.0.0.1:{port}", shots_dir(tmp_path)
    try:
        wait_for(lambda: console_up(base), 30, what="the console")
        log_in(driver, base, "ops")

        def card_text(camera_state: str = "live") -> str:
            """The main stream's line on the pair's card, once the card shows the camera in that state."""
            driver.get(f"{base}/cameras")
            cards = driver.find_elements(By.CSS_SELECTOR, f"#camera-pair.state-{camera_state} .main-stream")
            return cards[0].text if cards else ""

        wait_for(lambda: card_text() == "主码流（取证）: 在线", 60, what="both streams shown live")
        main_server.kill()
        # The camera stays live (detection goes on) while its card says where evidence comes from now.
        wait_for(lambda: "证据取自子码流" in card_text(), 30, what="the main stream shown down")
        assert card_text().startswith("主码流（取证）: 离线重连")
        photograph(driver, shots, "pair-camera-main-down")
    finally:
        daemon.stop()
        main_server.kill()
        sub_server.kill()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, assets):
    """`streetscan console` on a replay of the staged kerbside footage (examples/footage.yaml, its two
    kerbs answered for by two units), with a 30 s deadline on illegal parking so that cases reach it."""
    tmp = tmp_path_factory.mktemp("console-recorded")
    out = tmp / "out"
    streams = tmp / "footage.yaml"
    doc = yaml.safe_load((REPO / "examples" / "footage.yaml").read_text(encoding="utf-8"))
    doc["defaults"]["deadlines"] = {"illegal_parking": "30s"}
    doc["defaults"]["deadline_checks"] = {"recheck_s": "15s"}
    streams.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    cli = [sys.executable, "-m", "streetscan"]
    proc = subprocess.run(
        [
            *cli,
            "replay",
            str(assets / "footage" / "street_parking_overhead.mp4"),
            "--streams",
            str(streams),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, role in (("admin", "admin"), ("ops", "operator")):
        subprocess.run(
            [*cli, "users", "add", name, "--role", role, "--out", str(out), "--password", PASSWORD],
            check=True,
            capture_output=True,
            timeout=60,
        )
    port = free_port()
    server = subprocess.Popen(
        [*cli, "console", "--out", str(out), "--streams", str(streams), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: console_up(base), 30, what="streetscan console")
        yield {"base": base, "out": out, "streams": streams}
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.assets
def test_console_on_a_replay_of_real_footage(chromium, recorded, tmp_path):
    """The analyst's path: replay, then browse the cases, a dwell case's before/now evidence, the
    camera with its kerb zones and the zone editor on the real picture."""
    from selenium.webdriver.common.by import By

    driver, base, shots = chromium, recorded["base"], shots_dir(tmp_path)
    driver.get(f"{base}/login")
    assert driver.title == "StreetScan · 登录"  # issue #35: the login page was titled 案件
    log_in(driver, base, "admin")
    driver.get(f"{base}/cases")
    rows = driver.find_elements(By.CSS_SELECTOR, "#cases tr.case")
    assert len(rows) >= 3 and all("kerbside" in r.text or "Kerbside" in r.text for r in rows)
    photograph(driver, shots, "cases")
    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    for key in ("first", "clean", "annotated"):  # a dwell rule's case: the car when first seen, and now
        img = driver.find_element(By.ID, f"evidence-{key}")
        wait_for(lambda img=img: image_loaded(driver, img), 10, what=f"{key} evidence")
    # Each box of the review row says what it is for (there were two unlabelled 原因 boxes).
    labels = {el.get_attribute("for"): el.text for el in driver.find_elements(By.CSS_SELECTOR, "main label[for]")}
    assert labels.get("dismiss-reason") == "驳回原因" and labels.get("mute-reason") == "屏蔽原因", labels
    photograph(driver, shots, "case")
    driver.get(f"{base}/cameras")
    card = driver.find_element(By.ID, "camera-kerbside")
    assert len(card.find_elements(By.CSS_SELECTOR, "svg polygon.zone")) == 2
    # A recorded camera shows what its replay measured, not dashes (issue #35).
    meta = card.find_elements(By.CSS_SELECTOR, "p.meta")[1].text
    assert "分析帧率: 2.0" in meta and "丢帧: 0" in meta, meta
    wait_for(lambda: image_loaded(driver, card.find_element(By.CSS_SELECTOR, "img.snapshot")), 10, what="picture")
    photograph(driver, shots, "cameras")
    card.find_element(By.CSS_SELECTOR, "a.edit-zones").click()
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#overlay polygon")) == 2, 10, what="zones drawn")
    photograph(driver, shots, "zones")
    driver.get(f"{base}/overview")
    assert int(driver.find_element(By.ID, "total-cases").text) == len(rows)
    chart = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];fetch('/overview/per-camera.svg').then(r => r.text()).then(done);"
    )
    assert "案件总数" in chart and "未消除案件" in chart  # the page's language, not English
    photograph(driver, shots, "overview")


@pytest.mark.assets
def test_a_supervisor_reads_each_units_board_and_its_rates_are_the_events(chromium, recorded, tmp_path):
    """The supervision board (督) on the kerbside replay: per responsible unit, its cases, overdue,
    rectified and rectified on time, and the two rates, each equal to what the events say; the
    overview names the units furthest behind; the CSV has the same figures; a unit's name opens
    its cases."""
    from selenium.webdriver.common.by import By

    driver, base, shots = chromium, recorded["base"], shots_dir(tmp_path)
    log_in(driver, base, "ops")
    events = [json.loads(line) for line in (recorded["out"] / "events.jsonl").read_text().splitlines()]
    expected: dict[str, list[int]] = {}  # unit -> cases, overdue now, rectified, rectified on time
    for event_id in {e["event_id"] for e in events}:
        revs = [e for e in events if e["event_id"] == event_id]
        if not revs[0]["deadline"]:
            continue
        states = {e["state"] for e in revs}
        rectified, overdue = bool(states & {"resolved", "verified"}), "overdue" in states
        row = expected.setdefault(revs[0]["responsible"]["unit"], [0, 0, 0, 0])
        row[0] += 1
        row[1] += overdue and not rectified
        row[2] += rectified
        row[3] += rectified and not overdue
    assert set(expected) == {"样例街道城管一中队", "样例街道城管二中队"}
    assert sum(row[1] for row in expected.values()) >= 1, "no case reached its deadline still there"

    driver.get(f"{base}/units")
    shown = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#units tr.unit"):
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        shown[cells[0]] = cells
    assert set(shown) == set(expected)
    for unit, (cases, overdue, rectified, on_time) in expected.items():
        cells = shown[unit]
        assert [int(c) for c in (cells[1], cells[3], cells[4], cells[5])] == [cases, overdue, rectified, on_time]
        assert int(cells[2]) == cases - overdue - rectified
        assert cells[6] == f"{100 * rectified / cases:.0f}%"
        judged = rectified + overdue
        assert cells[7] == (f"{100 * on_time / judged:.0f}%" if judged else "—")
    photograph(driver, shots, "units")

    csv_text = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; fetch('/units.csv').then(r => r.text()).then(done);"
    )
    rows = [line.split(",") for line in csv_text.strip().splitlines()]
    assert rows[0][:4] == ["unit", "cases", "open_in_time", "overdue"]
    assert {r[0]: int(r[1]) for r in rows[1:]} == {u: v[0] for u, v in expected.items()}

    driver.get(f"{base}/overview")
    worst = driver.find_elements(By.CSS_SELECTOR, "#worst-units tr td:first-child")
    assert worst and worst[0].text in expected
    photograph(driver, shots, "overview-units")

    driver.get(f"{base}/units")
    unit = next(iter(sorted(expected)))
    driver.find_element(By.LINK_TEXT, unit).click()
    wait_for(lambda: "unit=" in driver.current_url, 10, what="the unit's cases")
    rows = driver.find_elements(By.CSS_SELECTOR, "#cases tr.case")
    assert len(rows) == expected[unit][0]
    assert all(r.find_element(By.CSS_SELECTOR, "td.unit").text == unit for r in rows)
    # A case still there after its deadline says so in the list, whatever revision came after.
    assert len(driver.find_elements(By.CSS_SELECTOR, "#cases span.badge.overdue")) == expected[unit][1]
    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    assert unit in driver.find_element(By.ID, "duty").text
