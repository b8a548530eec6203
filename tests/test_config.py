from datetime import time
from pathlib import Path

import pytest
import yaml

from streetscan.pipeline.catalogue import CATALOGUE, Grade
from streetscan.pipeline.config import ConfigError, load_config
from streetscan.pipeline.plan import CameraPlan
from streetscan.pipeline.rules import resolve_params

REPO = Path(__file__).resolve().parents[1]

GOOD_CAMERA = {
    "id": "cam-1",
    "name": "Gate 1",
    "url": "rtsp://127.0.0.1/cam1",
    "location": {"address": "1 Main St"},
    "zones": [{"id": "kerb", "kind": "no_parking", "polygon": [[0, 0], [100, 0], [100, 100]]}],
}


def write(tmp_path: Path, data) -> Path:
    p = tmp_path / "streams.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return p


def problems(tmp_path: Path, data) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    assert str(tmp_path / "streams.yaml") in str(info.value)  # the file is always named
    return str(info.value)


def test_repo_example_is_valid():
    config = load_config(REPO / "streams.yaml")
    assert len(config.cameras) >= 3
    kerb = config.camera("jd-kerb-07")
    assert kerb.analysis_fps == 1
    assert kerb.rule_overrides("illegal_parking") == {"dwell_s": 180}
    assert kerb.rule_overrides("crowd_gathering") == {"min_count": 25}  # file-level default


def test_camera_is_resolved_once_with_defaults_grades_and_time_zone(tmp_path):
    zones = [
        {"id": "main", "kind": "no_parking", "grade": "demonstration"},
        {"id": "side", "kind": "no_parking", "grade": "alley"},
    ]
    data = {
        "defaults": {
            "analysis_fps": 3,
            "timezone": "Asia/Urumqi",
            "tracking": {"min_frames": 4, "high": 0.6},
            "rules": {"illegal_parking": {"max_move_ratio": 0.2}},
        },
        "cameras": [
            {**GOOD_CAMERA, "zones": zones, "tracking": {"high": 0.5}, "rules": {"illegal_parking": {"gap_s": 4}}},
            {**GOOD_CAMERA, "id": "cam-2", "analysis_fps": 1, "timezone": "Asia/Shanghai"},
        ],
    }
    config = load_config(write(tmp_path, data))
    cam, other = config.camera("cam-1"), config.camera("cam-2")
    assert (cam.analysis_fps, str(cam.tz), other.analysis_fps, str(other.tz)) == (3, "Asia/Urumqi", 1, "Asia/Shanghai")
    assert (cam.tracking.high, cam.tracking.min_frames) == (0.5, 4)  # camera over file defaults, field by field
    parking = {r.zone.id: r for r in CameraPlan.build(cam, {"car"}).rules if r.scene.code == "illegal_parking"}
    base = CATALOGUE["illegal_parking"].defaults["dwell_s"]
    # Grade scaling is applied in the plan: a demonstration street is stricter than an alley.
    assert parking["main"].params.dwell_s < base < parking["side"].params.dwell_s
    assert cam.rule_overrides("illegal_parking") == {"max_move_ratio": 0.2, "gap_s": 4}
    assert parking["main"].params.max_move_ratio == 0.2 and parking["main"].params.gap_s == 4
    # What a reload compares: the same file gives equal cameras; a changed default changes them.
    assert load_config(write(tmp_path, data)).camera("cam-1") == cam
    data["defaults"]["analysis_fps"] = 2
    changed = load_config(write(tmp_path, data))
    assert changed.camera("cam-1") != cam and changed.camera("cam-2") == other  # cam-2 sets its own fps


def test_http_flv_hls_and_rtmp_urls_are_cameras_other_schemes_are_not(tmp_path):
    for url in ("http://10.1.2.3/live/cam1.flv", "https://platform.example/hls/cam1.m3u8", "rtmp://10.1.2.3/live/1"):
        assert load_config(write(tmp_path, {"cameras": [{**GOOD_CAMERA, "url": url}]})).camera("cam-1").url == url
    msg = problems(tmp_path, {"cameras": [{**GOOD_CAMERA, "url": "ftp://10.1.2.3/cam1"}]})
    assert "field url: unsupported URL scheme 'ftp'" in msg and "http(s)://" in msg


def test_self_intersecting_zone_is_rejected(tmp_path):
    bow_tie = [[0, 0], [100, 0], [0, 100], [100, 120]]  # corners out of order: the outline crosses itself
    msg = problems(
        tmp_path, {"cameras": [{**GOOD_CAMERA, "zones": [{"id": "z", "kind": "roadway", "polygon": bow_tie}]}]}
    )
    assert "field zones[0].polygon: polygon crosses itself: edge 2 (points 2-3) crosses edge 4 (points 4-1)" in msg


def test_zero_area_bow_tie_is_reported_as_crossing_not_as_collinear(tmp_path):
    bow_tie = [[0, 0], [100, 100], [100, 0], [0, 100]]  # its two halves cancel: area 0
    msg = problems(
        tmp_path, {"cameras": [{**GOOD_CAMERA, "zones": [{"id": "z", "kind": "roadway", "polygon": bow_tie}]}]}
    )
    assert "polygon crosses itself" in msg and "collinear" not in msg
    line = [[0, 0], [50, 0], [100, 0]]
    msg = problems(tmp_path, {"cameras": [{**GOOD_CAMERA, "zones": [{"id": "z", "kind": "roadway", "polygon": line}]}]})
    assert "polygon has no area (points are collinear or repeated)" in msg


def test_missing_required_field_names_camera_and_field(tmp_path):
    cam = {k: v for k, v in GOOD_CAMERA.items() if k != "url"}
    msg = problems(tmp_path, {"cameras": [cam]})
    assert "camera 'cam-1' (cameras[0]) field url: required field is missing" in msg


def test_polygon_with_two_points(tmp_path):
    cam = {**GOOD_CAMERA, "zones": [{"id": "z", "kind": "roadway", "polygon": [[0, 0], [5, 5]]}]}
    msg = problems(tmp_path, {"cameras": [cam]})
    assert "camera 'cam-1' (cameras[0]) field zones[0].polygon: polygon needs at least 3 points, got 2" in msg


def test_unknown_zone_kind(tmp_path):
    cam = {**GOOD_CAMERA, "zones": [{"id": "z", "kind": "parking_lot"}]}
    msg = problems(tmp_path, {"cameras": [cam]})
    assert "field zones[0].kind:" in msg and "'no_parking'" in msg and "'storefront'" in msg


def test_unknown_scene_class_in_rules(tmp_path):
    cam = {**GOOD_CAMERA, "rules": {"illegal_parkng": {"dwell_s": 60}}}
    msg = problems(tmp_path, {"cameras": [cam]})
    assert "field rules: unknown scene class 'illegal_parkng'" in msg


def test_parameter_that_the_rule_kind_does_not_take(tmp_path):
    cam = {**GOOD_CAMERA, "rules": {"crowd_gathering": {"dwell_s": 60}}}
    msg = problems(tmp_path, {"cameras": [cam]})
    assert "crowd_gathering: unknown parameter 'dwell_s' for a count rule" in msg
    assert "min_count" in msg  # says what is allowed


def test_negative_analysis_fps(tmp_path):
    msg = problems(tmp_path, {"cameras": [{**GOOD_CAMERA, "analysis_fps": -1}]})
    assert "camera 'cam-1' (cameras[0]) field analysis_fps: Input should be greater than 0" in msg


def test_duplicate_camera_ids(tmp_path):
    msg = problems(tmp_path, {"cameras": [GOOD_CAMERA, GOOD_CAMERA]})
    assert "camera id 'cam-1' is used twice" in msg


def test_duplicate_zone_ids(tmp_path):
    cam = {**GOOD_CAMERA, "zones": [{"id": "z", "kind": "roadway"}, {"id": "z", "kind": "sidewalk"}]}
    msg = problems(tmp_path, {"cameras": [cam]})
    assert "camera 'cam-1' (cameras[0]): zone id 'z' is used twice" in msg


def test_replay_picks_the_camera_whose_url_names_the_file():
    from streetscan.workers.replay import camera_for_path

    config = load_config(REPO / "examples" / "footage.yaml")
    assert camera_for_path(config, "/any/dir/plaza_pedestrians.mp4").id == "plaza"
    assert camera_for_path(config, "x.mp4", "overpass").id == "overpass"
    with pytest.raises(KeyError, match="no camera's url names x.mp4: choose one with --camera"):
        camera_for_path(config, "x.mp4")


def test_bad_schedule_range(tmp_path):
    cam = {**GOOD_CAMERA, "zones": [{"id": "z", "kind": "storefront", "schedule": {"active": ["7am-6pm"]}}]}
    msg = problems(tmp_path, {"cameras": [cam]})
    assert "field zones[0].schedule.active: time range '7am-6pm' is not HH:MM-HH:MM" in msg


def test_misspelt_field_is_rejected_not_ignored(tmp_path):
    msg = problems(tmp_path, {"cameras": [{**GOOD_CAMERA, "analysis_fsp": 2}]})
    assert "field analysis_fsp: unknown field" in msg


def test_unsupported_url_scheme(tmp_path):
    msg = problems(tmp_path, {"cameras": [{**GOOD_CAMERA, "url": "ftp://cam/1"}]})
    assert "field url: unsupported URL scheme 'ftp'" in msg


def test_unknown_timezone(tmp_path):
    msg = problems(tmp_path, {"defaults": {"timezone": "China/Beijing"}, "cameras": [GOOD_CAMERA]})
    assert "field defaults.timezone: unknown time zone 'China/Beijing'" in msg


def test_yaml_syntax_error_gives_line(tmp_path):
    msg = problems(tmp_path, "cameras:\n  - id: a\n    name: [unclosed\n")
    assert "YAML syntax error" in msg and "line " in msg


def test_camera_without_id_is_named_by_index(tmp_path):
    cam = {k: v for k, v in GOOD_CAMERA.items() if k != "id"}
    msg = problems(tmp_path, {"cameras": [GOOD_CAMERA, cam]})
    assert "cameras[1] field id: required field is missing" in msg


def test_several_problems_are_all_reported(tmp_path):
    bad = {**GOOD_CAMERA, "analysis_fps": 0, "location": {}}
    msg = problems(tmp_path, {"cameras": [bad]})
    assert "field analysis_fps" in msg and "field location.address: required field is missing" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_schedule_wraps_midnight(tmp_path):
    cam = {**GOOD_CAMERA, "zones": [{"id": "z", "kind": "storefront", "schedule": {"active": ["18:00-02:00"]}}]}
    sched = load_config(write(tmp_path, {"cameras": [cam]})).cameras[0].zones[0].schedule
    assert sched.is_active(3, time(23, 30)) and sched.is_active(3, time(1, 0))
    assert not sched.is_active(3, time(12, 0))


def test_grade_scales_defaults_but_overrides_are_absolute():
    parking = CATALOGUE["illegal_parking"]
    assert resolve_params(parking, Grade.ARTERIAL).dwell_s == 300
    assert resolve_params(parking, Grade.DEMONSTRATION).dwell_s == 150
    assert resolve_params(parking, Grade.ALLEY).dwell_s == 600
    assert resolve_params(parking, Grade.DEMONSTRATION, {"dwell_s": 180}).dwell_s == 180


def test_platform_code_table_defaults_overrides_and_errors(tmp_path):
    from streetscan.pipeline.catalogue import CATALOGUE, DEFAULT_PLATFORM_CODES, duplicate_platform_codes

    assert set(DEFAULT_PLATFORM_CODES) == set(CATALOGUE) and not duplicate_platform_codes(DEFAULT_PLATFORM_CODES)
    cams = "cameras:\n  - {id: a, name: a, url: a.mp4, location: {address: x}}\n"
    path = tmp_path / "streams.yaml"
    path.write_text(
        "platform_codes:\n  illegal_parking: {code: '050501', name: 机动车违章停放}\n" + cams, encoding="utf-8"
    )
    pc = load_config(path).camera("a").platform_codes
    assert (pc["illegal_parking"].code, pc["illegal_parking"].name, pc["illegal_parking"].category) == (
        "050501",
        "机动车违章停放",
        "街面秩序",
    )  # unset fields keep the default table's
    assert pc["exposed_garbage"] == DEFAULT_PLATFORM_CODES["exposed_garbage"]
    for table, message in (
        ("{litter_bug: {code: '9'}}", "unknown scene class 'litter_bug'"),
        ("{illegal_parking: {code: '0504'}}", "code '0504' is given to both out_of_store_trading and illegal_parking"),
        ("{illegal_parking: {code: '05 05'}}", "platform_codes.illegal_parking.code"),
        ("{illegal_parking: {colour: red}}", "platform_codes.illegal_parking.colour"),
    ):
        path.write_text(f"platform_codes: {table}\n" + cams, encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert str(path) in str(err.value) and message in str(err.value), str(err.value)
