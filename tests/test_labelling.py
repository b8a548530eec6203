"""The cameras teach the model (issue #33): frames to label, the label store, the labelling view in
a real browser driven by the keyboard alone, and the export the dataset builder reads.

Frames are real street footage (the staged kerbside clip) with a real object pasted in (a garbage
pile cut from a real photograph), as a camera would have seen it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml
from street_scenes import garbage_crop, paste, tricycle_crop

from streetscan.dataset.export import camera_day_splits, export_labels
from streetscan.dataset.formats import read_yolo
from streetscan.dataset.labels import BadLabel, LabelStore, StaleLabel
from streetscan.dataset.manifest import SourceSpec
from streetscan.pipeline.models import vocabulary

STREET = "street_parking_overhead.mp4"
PILE = (540, 70, 610, 125)


def street_frames(assets: Path, folder: Path, n: int, pile=None) -> list[Path]:
    """`n` frames of the kerbside clip, one every 2 s, the pile pasted on each when given."""
    cap = cv2.VideoCapture(str(assets / "footage" / STREET))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i * 2 * fps))
        ok, img = cap.read()
        assert ok, f"frame {i} of {STREET}"
        if pile is not None:
            paste(img, pile, PILE)
        path = folder / f"frame{i:03d}.jpg"
        cv2.imwrite(str(path), img)
        out.append(path)
    cap.release()
    return out


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "out", vocabulary())


def test_a_label_is_kept_with_who_and_when_and_a_save_from_an_old_version_is_refused(store, tmp_path):
    picture = tmp_path / "p.jpg"
    cv2.imwrite(str(picture), 90 * __import__("numpy").ones((360, 640, 3), dtype="uint8"))
    store.add_frame("f1", "kerb", "2026-12-07T09:00:00+08:00", picture, "snapshot")
    first = store.save("f1", [{"object": "materials", "box": [10, 20, 110, 90]}], nothing=False, difficult=False,
                       user="ops1", version=0)  # fmt: skip
    assert (first.version, first.user, first.boxes) == (1, "ops1", (("materials", (10.0, 20.0, 110.0, 90.0)),))
    # A second operator who opened the frame before the first saved does not overwrite it unseen.
    with pytest.raises(StaleLabel, match="labelled again by ops1"):
        store.save("f1", [], nothing=True, difficult=False, user="ops2", version=0)
    second = store.save("f1", [], nothing=True, difficult=True, user="ops2", version=1)
    assert (second.version, second.nothing, second.difficult) == (2, True, True)
    assert [(h.version, h.user) for h in store.history("f1")] == [(1, "ops1"), (2, "ops2")]
    # Boxes are the vocabulary's objects inside the frame; an empty frame is said to be empty.
    with pytest.raises(BadLabel, match=r"boxes\[0\]\.object: one of the vocabulary's objects"):
        store.save("f1", [{"object": "spaceship", "box": [0, 0, 9, 9]}], nothing=False, difficult=False,
                   user="ops1", version=2)  # fmt: skip
    with pytest.raises(BadLabel, match=r"boxes\[0\]\.box: smaller than 2x2 pixels inside the frame"):
        store.save("f1", [{"object": "car", "box": [700, 10, 800, 50]}], nothing=False, difficult=False,
                   user="ops1", version=2)  # fmt: skip
    with pytest.raises(BadLabel, match="no boxes"):
        store.save("f1", [], nothing=False, difficult=False, user="ops1", version=2)
    # The store outlives the process: a restart reads the same labels.
    store.close()
    again = LabelStore(tmp_path / "out", vocabulary())
    assert again.label("f1") == second and len(again.history("f1")) == 2


def test_the_queue_puts_unknown_objects_first_then_false_cases_then_doubtful_ones(store, tmp_path):
    import numpy as np

    picture = tmp_path / "p.jpg"
    cv2.imwrite(str(picture), np.full((100, 100, 3), 90, dtype=np.uint8))
    evidence = store.out_dir / "evidence" / "e"
    evidence.mkdir(parents=True)
    clean = evidence / "clean.jpg"
    cv2.imwrite(str(clean), np.full((100, 100, 3), 90, dtype=np.uint8))

    def case(i: int, scene: str) -> dict:
        return {"event_id": f"00000000-0000-4000-8000-{i:012d}", "camera": {"id": "kerb"},
                "last_seen": {"wall": "2026-12-07T09:00:00+08:00"}, "scene_class": {"code": scene},
                "evidence": {"clean": "evidence/e/clean.jpg"}}  # fmt: skip

    store.add_frame("snap", "kerb", "2026-12-07T09:00:00+08:00", picture, "snapshot")
    escaped = {**case(9, "illegal_parking"), "evidence": {"clean": "../p.jpg"}}
    offered = [
        (case(1, "illegal_parking"), "low_confidence"),
        (case(2, "stacked_materials"), "scene_change"),
        (case(3, "illegal_parking"), "dismissed"),
        (escaped, "dismissed"),
    ]
    added = store.offer_cases(offered)
    assert added == 3  # a case naming a picture outside evidence/ is not taken
    assert [f.reason for f in store.queue()] == ["scene_change", "dismissed", "low_confidence", "snapshot"]
    assert store.offer_cases([(case(1, "illegal_parking"), "low_confidence")]) == 0  # offered again: once


@pytest.mark.assets
def test_the_export_is_a_source_the_builder_reads_with_whole_camera_days_per_split(assets, store, tmp_path):
    pile = garbage_crop(assets / "datasets" / "cn_garbage_bins")
    frames = street_frames(assets, tmp_path / "frames", 6, pile)
    days = ["2026-12-01", "2026-12-01", "2026-12-02", "2026-12-02", "2026-12-03", "2026-12-03"]
    for i, (path, day) in enumerate(zip(frames, days, strict=True)):
        store.add_frame(f"f{i}", "kerb", f"{day}T09:00:0{i}+08:00", path, "snapshot")
        if i == 5:
            store.save(f"f{i}", [], nothing=True, difficult=False, user="ops2", version=0)
        else:
            store.save(f"f{i}", [{"object": "garbage", "box": list(PILE)}], nothing=False, difficult=False,
                       user="ops1", version=0)  # fmt: skip
    folder = tmp_path / "datasets" / "kerb_labels"
    summary = export_labels(store, folder, "kerb_labels", val_fraction=0.3)
    assert summary["labellers"] == 2 and summary["boxes"] == {"garbage": 5}
    spec = SourceSpec.model_validate(yaml.safe_load((folder / "source.yaml").read_text(encoding="utf-8")))
    assert spec.licence == "the operator's own footage" and spec.staged == "kerb_labels"
    items = list(read_yolo(spec, folder))
    assert len(items) == 6 and all(not hasattr(i, "reason") for i in items)
    by_split: dict[str, set[str]] = {}
    for item in items:
        by_split.setdefault(item.split, set()).add(item.path.stem.split("__")[1])
        for box in item.boxes:  # the pile's box, back in the frame's relative coordinates
            assert box.name == "garbage" and abs(box.cx - (PILE[0] + PILE[2]) / 2 / 640) < 1e-3
    assert set(by_split) == {"train", "val"} and not by_split["train"] & by_split["val"]  # days never straddle
    empty = next(i for i in items if i.path.stem.endswith("__f5"))
    assert not empty.boxes  # "nothing here": a hard negative
    assert "labelled by 2 operator(s)" in (folder / "SOURCE.md").read_text(encoding="utf-8")
    assert camera_day_splits(store.frames()[:1], 0.3) in ({"kerb/2026-12-01": "train"}, {"kerb/2026-12-01": "val"})
    # The dataset builder takes it like any staged public set: the manifest entry as written.
    from streetscan.dataset.builder import DatasetBuilder
    from streetscan.dataset.manifest import Manifest

    build = tmp_path / "build"
    result = DatasetBuilder(build, Manifest(sources=[spec])).add(spec, assets=tmp_path)
    assert result.status == "built", result.reason
    assert sum(result.images.values()) == 6 and result.images["val"] >= 1
    assert sum(n for (_, _, obj), n in result.boxes.items() if obj == "garbage") == 5


@pytest.mark.assets
@pytest.mark.integration
def test_an_operator_labels_frames_with_the_keyboard_alone_and_a_viewer_cannot(assets, tmp_path, chromium):
    """The labelling view in Chromium: B draws a box, arrows move it, Alt+arrows size it, ] and the
    number keys pick the object, N saves and opens the next frame; the labels are in the store
    afterwards, and the export reads them. A viewer sees the queue but not the view, and the API
    refuses a viewer's label."""
    from realparts import free_port, wait_for
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from test_console_browser import PASSWORD, console_up, log_in, photograph, shots_dir

    out = tmp_path / "out"
    store = LabelStore(out, vocabulary())
    pile = garbage_crop(assets / "datasets" / "cn_garbage_bins")
    for i, path in enumerate(street_frames(assets, tmp_path / "frames", 3, pile)):
        store.add_frame(f"kerb-{i}", "kerb", f"2026-12-07T09:00:{i:02d}+08:00", path, "snapshot")
    store.close()
    cli = [sys.executable, "-m", "streetscan"]
    for name, role in (("ops", "operator"), ("watcher", "viewer")):
        subprocess.run([*cli, "users", "add", name, "--role", role, "--out", str(out), "--password", PASSWORD],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    port = free_port()
    server = subprocess.Popen([*cli, "console", "--out", str(out), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    base, driver, shots = f"http://127.0.0.1:{port}", chromium, shots_dir(tmp_path)
    try:
        wait_for(lambda: console_up(base), 30, what="streetscan console")
        log_in(driver, base, "ops")
        driver.get(f"{base}/label")
        rows = driver.find_elements(By.CSS_SELECTOR, "#queue tr.frame")
        assert len(rows) == 3
        rows[0].find_element(By.CSS_SELECTOR, "a").click()
        wait_for(lambda: "/label/kerb-0" in driver.current_url, 10, what="the first frame")
        # B: a box in the middle, a quarter of the frame: [240, 135, 400, 225]. Alt+arrows size it to
        # the pile's 70 x 55, arrows move it onto the pile (Shift: 10 px a press), ] x 12: garbage.
        keys = ActionChains(driver).send_keys("b").key_down(Keys.ALT).key_down(Keys.SHIFT)
        keys.send_keys(Keys.ARROW_LEFT * 9 + Keys.ARROW_UP * 3).key_up(Keys.SHIFT).send_keys(Keys.ARROW_UP * 5)
        keys.key_up(Keys.ALT).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT * 30 + Keys.ARROW_UP * 6)
        keys.key_up(Keys.SHIFT).send_keys(Keys.ARROW_UP * 5).send_keys("]" * 12).perform()
        assert driver.find_element(By.CSS_SELECTOR, "#box-list option").text == "1. garbage [540, 70, 610, 125]"
        photograph(driver, shots, "labelling")
        ActionChains(driver).send_keys("n").perform()  # save, next frame
        wait_for(lambda: "/label/kerb-1" in driver.current_url, 10, what="the next frame after saving")
        ActionChains(driver).send_keys("x").send_keys("n").perform()  # nothing here on this one
        wait_for(lambda: "/label/kerb-2" in driver.current_url, 10, what="the third frame")
        ActionChains(driver).send_keys("b").send_keys("]").send_keys("s").perform()
        wait_for(lambda: driver.execute_script("return document.body.dataset.saved") == "1", 10, what="saved")
        photograph(driver, shots, "labelling-saved")
        # A viewer reads the queue, cannot open the view, and the API refuses a viewer's label.
        driver.delete_all_cookies()
        log_in(driver, base, "watcher")
        driver.get(f"{base}/label")
        assert not driver.find_elements(By.ID, "refill")
        driver.get(f"{base}/label/kerb-0")
        assert "needs the operator role" in driver.page_source
        driver.get(f"{base}/label")
        status = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const csrf = document.querySelector('input[name="csrf"]').value;
            fetch('/api/label/kerb-0', {method: 'POST', headers: {'Content-Type': 'application/json',
              'X-CSRF-Token': csrf}, body: JSON.stringify({version: 1, boxes: [], nothing: true})})
              .then(r => done(r.status));""")
        assert status == 403
    finally:
        server.terminate()
        server.wait(10)
    store = LabelStore(out, vocabulary())
    first, second, third = (store.label(f"kerb-{i}") for i in range(3))
    assert first is not None and first.user == "ops" and first.boxes == (("garbage", (540.0, 70.0, 610.0, 125.0)),)
    assert second is not None and second.nothing and not second.boxes
    assert third is not None and third.boxes[0][0] == "car"  # a new box takes the object shown; ] the next one


def tricycle_frames(assets: Path, folder: Path, n: int) -> list[tuple[Path, tuple[int, int, int, int]]]:
    """`n` kerbside frames (every 1.5 s), each with the three-wheeler pasted somewhere along the
    road at 1.3-2x its size: (picture, where it was pasted)."""
    import random

    crop = tricycle_crop(assets / "footage")
    rng = random.Random(7)
    cap = cv2.VideoCapture(str(assets / "footage" / STREET))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        cap.set(cv2.CAP_PROP_POS_MSEC, 1500 * i)
        ok, img = cap.read()
        assert ok, f"frame {i} of {STREET}"
        scale = rng.uniform(1.3, 2.0)
        w, h = round(crop.shape[1] * scale), round(crop.shape[0] * scale)
        x, y = rng.randrange(20, 640 - w - 20), rng.randrange(130, 360 - h - 10)
        paste(img, crop, (x, y, x + w, y + h))
        path = folder / f"trike{i:03d}.jpg"
        cv2.imwrite(str(path), img)
        out.append((path, (x, y, x + w, y + h)))
    cap.release()
    return out


@pytest.mark.assets
@pytest.mark.integration
def test_frames_labelled_in_the_browser_teach_the_model_an_object_it_did_not_know(assets, tmp_path, chromium):
    """Issue #33's loop, end to end in CI time: 36 frames of real street footage with a real
    three-wheeler pasted in (cut from another real camera's frame; the own model maps `tricycle` to
    null), labelled through the console's labelling view (drag a box, 8 picks tricycle, N saves and
    opens the next); `streetscan dataset export` writes the source; scripts/finetune.py recovers
    streetscan-0.3's weights from its ONNX, fine-tunes them on the CPU with the base model's own
    boxes beside the operators', and scores both models on the held-out camera-days."""
    pytest.importorskip("ultralytics")
    from realparts import REPO, free_port, wait_for
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from test_console_browser import PASSWORD, console_up, log_in, photograph, shots_dir

    out = tmp_path / "out"
    store = LabelStore(out, vocabulary())
    frames = tricycle_frames(assets, tmp_path / "frames", 36)
    for i, (path, _) in enumerate(frames):  # six camera-days of six frames
        store.add_frame(f"trike-{i:02d}", "kerb", f"2026-12-0{1 + i // 6}T09:00:{i:02d}+08:00", path, "snapshot")
    store.close()
    cli = [sys.executable, "-m", "streetscan"]
    subprocess.run([*cli, "users", "add", "ops", "--role", "operator", "--out", str(out), "--password", PASSWORD],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    port = free_port()
    server = subprocess.Popen([*cli, "console", "--out", str(out), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    base, driver = f"http://127.0.0.1:{port}", chromium
    try:
        wait_for(lambda: console_up(base), 30, what="streetscan console")
        log_in(driver, base, "ops")
        driver.get(f"{base}/label/trike-00")
        for i, (_, (x1, y1, x2, y2)) in enumerate(frames):
            wait_for(lambda i=i: f"/label/trike-{i:02d}" in driver.current_url, 10, what=f"frame {i}")
            svg = driver.find_element(By.ID, "overlay")
            sw, sh = svg.size["width"], svg.size["height"]

            def at(x: float, y: float, sw=sw, sh=sh) -> tuple[int, int]:  # frame pixels -> offsets from its centre
                return round(x * sw / 640 - sw / 2), round(y * sh / 360 - sh / 2)

            actions = ActionChains(driver).move_to_element_with_offset(svg, *at(x1, y1)).click_and_hold()
            actions.move_to_element_with_offset(svg, *at((x1 + x2) / 2, (y1 + y2) / 2))
            actions.move_to_element_with_offset(svg, *at(x2, y2)).release().send_keys("8")
            if i == 0:
                actions.perform()
                photograph(driver, shots_dir(tmp_path), "labelling-tricycle")
                actions = ActionChains(driver)
            actions.send_keys("n").perform()
        wait_for(lambda: driver.current_url.endswith("/label"), 10, what="the queue, all frames labelled")
    finally:
        server.terminate()
        server.wait(10)
    store = LabelStore(out, vocabulary())
    labels = store.labels()
    assert len(labels) == 36 and all(lb.boxes[0][0] == "tricycle" for _, lb in labels)
    from streetscan.pipeline.track import box_iou

    drawn = {f.frame_id: lb.boxes[0][1] for f, lb in labels}
    assert all(box_iou(drawn[f"trike-{i:02d}"], box) > 0.8 for i, (_, box) in enumerate(frames))
    exported = tmp_path / "kerb_labels"
    proc = subprocess.run([*cli, "dataset", "export", str(exported), "--out", str(out), "--name", "kerb_labels",
                           "--val-fraction", "0.3"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "finetune.py"), str(exported), "--base", "streetscan-0.3",
         "--name", "streetscan-0.3-ft-test", "--out", str(tmp_path / "ft"), "--epochs", "20", "--imgsz", "320",
         "--batch", "8"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    ap = summary["ap50"]["tricycle"]
    assert ap["base"] == 0.0 and ap["new"] > ap["base"], ap
    assert summary["taught"] == ["tricycle"] and set(summary["kept"]) >= {"car"}
    card = yaml.safe_load(Path(summary["card"]).read_text(encoding="utf-8"))
    assert card["class_map"]["tricycle"] == "tricycle" and card["fine_tune"]["base"] == "streetscan-0.3"
