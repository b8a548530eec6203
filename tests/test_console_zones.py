"""The zone editor's file handling (console.fleet.StreamsFile) and the camera picture it draws on:
what it writes is validated by the streams.yaml model, written atomically after a backup, keeps
the operator's comments, and never replaces a file someone else changed meanwhile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from streetscan.console.fleet import BACKUPS_KEPT, RecordedFleet, StaleEdit, StreamsFile
from streetscan.pipeline.config import ConfigError, load_config
from streetscan.pipeline.evidence import CameraPicture

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def streams(tmp_path) -> StreamsFile:
    path = tmp_path / "streams.yaml"
    path.write_text((REPO / "streams.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return StreamsFile(path)


def zones_of(path: Path, camera: str) -> dict:
    cams = {c["id"]: c for c in yaml.safe_load(path.read_text(encoding="utf-8"))["cameras"]}
    return {z["id"]: z for z in cams[camera]["zones"]}


def test_a_changed_zone_is_written_with_the_rest_of_the_file_as_it_was(streams):
    before = streams.path.read_text(encoding="utf-8")
    zones = [
        {
            "id": "plaza",
            "kind": "sidewalk",
            "grade": "demonstration",
            "polygon": [[0, 300], [1280, 300], [1280, 720], [0, 720]],
        },
        {
            "id": "shopfronts",
            "kind": "storefront",
            "grade": "demonstration",
            "polygon": [[0, 100.0], [700, 100], [700, 300], [0, 300]],
            "schedule": {"active": ["07:00-18:00"]},
        },
        {"id": "kiosk", "kind": "sidewalk", "polygon": [[10, 10], [60, 10], [60, 40.5]], "classes": ["mobile_vendor"]},
    ]
    streams.path.chmod(0o644)
    backup = streams.replace_zones("xh-nanjing-e-01", zones, streams.version())
    after = streams.path.read_text(encoding="utf-8")
    assert backup.read_text(encoding="utf-8") == before
    # Camera passwords live in this file (issue #34 item 4): the new copy and the backup are the owner's.
    assert backup.stat().st_mode & 0o777 == 0o600 and streams.path.stat().st_mode & 0o777 == 0o600
    changed = [line for line in after.splitlines() if line not in before.splitlines()]  # (`kind: sidewalk` was there)
    assert changed == [
        "        polygon: [[0, 100], [700, 100], [700, 300], [0, 300]]",
        "      - id: kiosk",
        "        polygon: [[10, 10], [60, 10], [60, 40.5]]",
        "        classes: [mobile_vendor]",
    ]
    assert "# night market 18:00-07:00: trading allowed" in after  # the comments on kept zones stay
    cam = load_config(streams.path).camera("xh-nanjing-e-01")
    assert [z.id for z in cam.zones] == ["plaza", "shopfronts", "kiosk"]


def test_an_invalid_zone_is_refused_with_the_models_message_and_nothing_is_written(streams):
    before = streams.path.read_text(encoding="utf-8")
    cases = [
        ([{"id": "x", "kind": "no_parking", "polygon": [[0, 0], [100, 100], [100, 0], [0, 100]]}], "crosses itself"),
        ([{"id": "x", "kind": "no_parking", "polygon": [[0, 0], [10, 10]]}], "at least 3 points"),
        ([{"id": "x", "kind": "car_park"}], "zones[0].kind"),
        ([{"id": "x", "kind": "sidewalk", "schedule": {"active": ["7-18"]}}], "HH:MM-HH:MM"),
        ([{"id": "x", "kind": "sidewalk"}, {"id": "x", "kind": "sidewalk"}], "used twice"),
        ([{"id": "x", "kind": "sidewalk", "colour": "red"}], "unknown field"),
    ]
    for zones, expected in cases:
        with pytest.raises(ConfigError) as err:
            streams.replace_zones("jd-kerb-07", zones, streams.version())
        text = str(err.value)
        assert str(streams.path) in text and "camera 'jd-kerb-07'" in text and expected in text, text
    with pytest.raises(ConfigError, match="no camera 'nope'"):
        streams.replace_zones("nope", [], None)
    assert streams.path.read_text(encoding="utf-8") == before
    assert not list(streams.path.parent.glob("*.bak"))


def test_a_file_changed_since_the_editor_opened_is_not_overwritten(streams):
    seen = streams.version()
    streams.path.write_text(streams.path.read_text(encoding="utf-8") + "# edited by hand\n", encoding="utf-8")
    with pytest.raises(StaleEdit):
        streams.replace_zones("jd-kerb-07", [{"id": "kerb", "kind": "no_parking"}], seen)
    assert streams.path.read_text(encoding="utf-8").endswith("# edited by hand\n")


def test_backups_are_bounded(streams):
    for i in range(BACKUPS_KEPT + 5):
        streams.replace_zones(
            "jd-kerb-07",
            [
                {
                    "id": "kerb",
                    "kind": "no_parking",
                    "grade": "arterial",
                    "polygon": [[0, 200], [640 + i, 200], [640, 360], [0, 360]],
                }
            ],
        )
    assert len(list(streams.path.parent.glob("streams.yaml.*.bak"))) == BACKUPS_KEPT
    assert zones_of(streams.path, "jd-kerb-07")["kerb"]["polygon"][1] == [640 + BACKUPS_KEPT + 4, 200]
    assert not list(streams.path.parent.glob(".*.tmp"))


def test_recorded_fleet_lists_the_files_cameras_with_their_zones(streams, tmp_path):
    fleet = RecordedFleet(tmp_path, streams.path)
    cams = {c.id: c for c in fleet.cameras()}
    assert set(cams) == {"xh-nanjing-e-01", "jd-kerb-07", "alley-12"}
    assert cams["jd-kerb-07"].state == "recorded" and [z.id for z in cams["jd-kerb-07"].zones] == ["kerb"]
    assert [c.id for c in RecordedFleet(tmp_path, None, ["a", "b"]).cameras()] == ["a", "b"]


def test_camera_picture_is_replaced_on_its_interval_of_stream_time(tmp_path):
    pic = CameraPicture(tmp_path, "cam-1", interval_s=30)
    img = np.zeros((36, 64, 3), np.uint8)
    written = []
    for t in (0.0, 10.0, 29.9, 30.0, 45.0, 61.0, 5.0):  # 5.0: the stream restarted
        if pic.due(t):
            pic.write(t, img)
            written.append(t)
    assert written == [0.0, 30.0, 61.0, 5.0]
    assert pic.path == tmp_path / "snapshots" / "cam-1.jpg" and pic.path.stat().st_size > 0
    assert [p.name for p in pic.path.parent.iterdir()] == ["cam-1.jpg"]
