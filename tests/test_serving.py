"""What a model serves, as measured: the card's quality block, scene-class status, the bar for the
default, and the committed cards held to it."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from realparts import REPO
from test_training import evaluate, make_source

from streetscan.pipeline.catalogue import SCENE_CLASSES
from streetscan.pipeline.models import ModelError, ObjectQuality, Quality, card_paths, load_card
from streetscan.pipeline.serving import (
    BASELINE_MODEL,
    DEFAULT_MIN_SERVED,
    SERVED_AP50,
    Status,
    default_shortfalls,
    services,
)

MODELS = REPO / "models"


def quality(val: str = "v1", **ap50: float) -> Quality:
    return Quality("2026-11-24", val, 100, "results.json", {o: ObjectQuality(50, a, a / 2) for o, a in ap50.items()})


@pytest.fixture(scope="module")
def coco():
    return load_card(MODELS / f"{BASELINE_MODEL}.yaml")


def copy_card(card_path: Path, to: Path) -> Path:
    """A writable copy of a card and its weights."""
    to.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(card_path.read_text(encoding="utf-8"))
    shutil.copy(card_path.parent / data["weights"], to / data["weights"])
    shutil.copy(card_path, to / card_path.name)
    return to / card_path.name


@pytest.mark.parametrize(
    "objects, reason",
    [
        ({"not_an_object": {"boxes": 5, "ap50": 0.5, "ap50_95": 0.3}}, "quality.objects.not_an_object: not an object"),
        ({"car": {"boxes": 5, "ap50": 1.7, "ap50_95": 0.3}}, "quality.objects.car: ap50 must be within 0..1"),
        ({"car": {"boxes": 0, "ap50": 0.5, "ap50_95": 0.3}}, "quality.objects.car: boxes must be at least 1"),
        ({"car": {"ap50": 0.5}}, "quality.objects.car: needs boxes, ap50 and ap50_95"),
    ],
)
def test_quality_block_is_checked_where_the_card_is_read(tmp_path, marker_model, objects, reason):
    card = copy_card(marker_model, tmp_path)
    data = yaml.safe_load(card.read_text())
    data["quality"] = {"measured": "2026-11-24", "val": "abc", "images": 8, "results": "r.json", "objects": objects}
    card.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelError) as exc:
        load_card(card)
    assert str(card) in str(exc.value) and reason in str(exc.value)


def test_write_quality_replaces_its_own_block_and_keeps_the_rest(tmp_path, marker_model):
    card = copy_card(marker_model, tmp_path)
    card.write_text("# why this card says what it says\n" + card.read_text())
    quality(car=0.5).write_into(card)
    quality(val="v2", car=0.8).write_into(card)
    text = card.read_text()
    assert text.startswith("# why this card") and text.count("\nquality:") == 1 and text.count(Quality.MARKER) == 1
    loaded = load_card(card)
    assert loaded.quality.val == "v2" and loaded.quality.objects["car"] == ObjectQuality(50, 0.8, 0.4)
    hand = copy_card(marker_model, tmp_path / "hand")
    data = yaml.safe_load(hand.read_text())
    data["quality"] = {"measured": "x", "val": "x", "images": 1, "results": "x", "objects": {}}
    hand.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelError, match="written by hand"):
        quality(car=0.5).write_into(hand)


def test_a_scene_class_is_served_only_when_every_object_it_maps_clears_the_bar(coco):
    # COCO maps person, car, bus, truck, bicycle, motorcycle, umbrella, furniture.
    card = dataclasses.replace(
        coco, quality=quality(person=0.5, car=0.7, bus=SERVED_AP50 - 0.01, truck=0.6, bicycle=0.4)
    )
    status = {s.scene.code: s for s in services(card)}
    assert status["crowd_gathering"].status is Status.SERVED and status["crowd_gathering"].objects == ("person",)
    assert status["illegal_parking"].status is Status.WEAK and status["illegal_parking"].objects == ("bus",)
    assert status["bike_misparking"].status is Status.UNMEASURED and status["bike_misparking"].objects == (
        "motorcycle",
    )
    assert status["out_of_store_trading"].status is Status.UNMEASURED
    assert status["exposed_garbage"].status is Status.MISSING and status["exposed_garbage"].objects == ()
    assert [s.scene for s in services(card)] == list(SCENE_CLASSES)
    # No quality block: a claim without evidence serves nothing.
    assert {s.status for s in services(dataclasses.replace(coco, quality=None))} == {Status.UNMEASURED, Status.MISSING}


def test_the_bar_for_the_default_names_each_condition_it_fails(coco):
    every = {o: o for s in SCENE_CLASSES for o in s.objects}
    baseline = dataclasses.replace(coco, quality=quality(person=0.5, car=0.6))
    strong = dataclasses.replace(coco, name="candidate", class_map=every, quality=quality(**{o: 0.7 for o in every}))
    assert default_shortfalls(strong, baseline) == []
    assert default_shortfalls(baseline, baseline) == []  # the baseline itself is never refused
    # Short of scene classes: only the first few objects keep their classes mapped.
    few = [o for s in SCENE_CLASSES[: DEFAULT_MIN_SERVED - 1] for o in s.objects]
    narrow = dataclasses.replace(strong, class_map={o: o for o in few}, quality=quality(**{o: 0.7 for o in few}))
    (line,) = [m for m in default_shortfalls(narrow, baseline) if "scene classes" in m]
    served = sum(s.status is Status.SERVED for s in services(narrow))
    assert served < DEFAULT_MIN_SERVED and line.startswith(f"serves {served} of 14")
    worse = dataclasses.replace(strong, quality=quality(**{**{o: 0.7 for o in every}, "person": 0.45}))
    assert default_shortfalls(worse, baseline) == ["person AP50 0.450 below coco-centernet-mbv3's 0.500"]
    elsewhere = dataclasses.replace(strong, quality=quality(val="other", **{o: 0.7 for o in every}))
    assert "same val boxes" in default_shortfalls(elsewhere, baseline)[0]
    assert "no measured quality" in default_shortfalls(dataclasses.replace(strong, quality=None), baseline)[0]


def test_the_committed_default_clears_the_bar_and_every_own_model_is_measured_against_coco(coco):
    default = (MODELS / "DEFAULT").read_text().strip()
    assert default_shortfalls(load_card(MODELS / f"{default}.yaml"), coco) == []
    assert coco.quality is not None
    own = [load_card(p) for p in sorted(MODELS.glob("streetscan-*.yaml"))]
    assert own, "no StreetScan model card committed"
    for card in own:
        assert card.quality is not None and card.quality.val == coco.quality.val, (
            f"{card.name}: measure it with {BASELINE_MODEL} in one run (scripts/evaluate.py --write-quality)"
        )
        assert (REPO / card.quality.results).is_file(), f"{card.name} cites {card.quality.results}, not committed"


def test_evaluate_writes_the_quality_it_measured_into_each_card(tmp_path, marker_model):
    src, mapping = make_source(tmp_path / "src")
    build = tmp_path / "build"
    (build / "val").mkdir(parents=True)
    (build / "labels" / "val").mkdir(parents=True)
    images = sorted((src / "images" / "val").glob("*.png"))
    (build / "val" / "markers.txt").write_text("\n".join(str(p) for p in images) + "\n")
    for img in images:  # a build's labels carry vocabulary ids: car is 1
        line = (src / "labels" / "val" / f"{img.stem}.txt").read_text().split()
        (build / "labels" / "val" / f"{img.stem}.txt").write_text(" ".join(["1", *line[1:]]) + "\n")
    card = copy_card(marker_model, tmp_path / "card")
    out = tmp_path / "results.json"
    args = [str(build), "--built", "--model", str(card), "--manifest", str(mapping), "--json", str(out)]
    evaluate.main([*args, "--write-quality"])
    report = json.loads(out.read_text())
    written = load_card(card).quality
    car = report["pooled"]["models"][str(card)]["car"]
    assert written.val == report["val_digest"] and written.images == 8 and written.results == out.as_posix()
    assert written.objects["car"].boxes == 8 and written.objects["car"].ap50 == pytest.approx(car["ap50"], abs=1e-3)
    # Other boxes, another digest: figures from two val sets are never compared.
    moved = build / "labels" / "val" / f"{images[0].stem}.txt"
    cls, cx, *rest = moved.read_text().split()
    moved.write_text(" ".join([cls, f"{float(cx) + 0.01:.5f}", *rest]) + "\n")
    assert evaluate.main(args)["val_digest"] != written.val
    with pytest.raises(SystemExit):
        evaluate.main([*args, "--write-quality", "--limit", "2"])


def streetscan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streetscan", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "220"},
    )


def test_models_command_lists_what_each_model_serves_and_the_default_verdict(coco):
    proc = streetscan("models")
    assert proc.returncode == 0 and "skipped" not in proc.stderr, proc.stderr
    cards = card_paths(MODELS)
    assert {p.stem for p in cards} >= {BASELINE_MODEL, "streetscan-0.3"} and "datasets" not in {p.stem for p in cards}
    for card in cards:
        assert card.stem in proc.stdout
    own = load_card(MODELS / "streetscan-0.3.yaml")
    verdict = next(line for line in proc.stdout.splitlines() if line.startswith("streetscan-0.3: bar"))
    short = default_shortfalls(own, coco)
    assert (
        verdict.endswith(": bar for the default met") if not short else verdict.endswith("not met: " + "; ".join(short))
    )
    one = streetscan("models", "streetscan-0.3")
    row = next(line for line in one.stdout.splitlines() if "out_of_store_trading" in line)
    assert one.returncode == 0 and "unmeasured" in row and "umbrella -" in row


def test_model_names_stay_whole_in_an_80_column_terminal():
    # Issue #35 item 6: `streetscan models` cut names to "stree…" at 80 columns.
    proc = subprocess.run(
        [sys.executable, "-m", "streetscan", "models"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    for card in card_paths(MODELS):
        assert card.stem in rows, proc.stdout
        assert "…" not in rows[card.stem] and len(rows[card.stem].rstrip()) <= 80
