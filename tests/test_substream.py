"""Substream detection (#36): detect on the camera's substream, take evidence from its main stream.

The pair is made from a real kerbside clip (street_parking_overhead.mp4, 640x360): the main stream
is the clip, the substream the same picture scaled to 512x288, as a camera sends a main stream and
a smaller substream of one picture. Zones are drawn in the main stream's pixels.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
import pytest
import yaml
from marker_model import red_marker
from realparts import DaemonProcess, RtspServer, encode_clip, wait_for

from streetscan.delivery.sinks import JsonlSink
from streetscan.pipeline.config import ConfigError, parse_config
from streetscan.pipeline.detect import load_detector, make_detections
from streetscan.pipeline.models import resolve_model
from streetscan.pipeline.track import box_iou
from streetscan.workers.replay import ReplayJob

pytestmark = [pytest.mark.assets, pytest.mark.integration]

STREET = "street_parking_overhead.mp4"
SECONDS = 40


def pair(assets: Path, tmp: Path, sub_filter: str = "scale=512:288", name: str = "sub") -> tuple[Path, Path]:
    main, sub = tmp / "main.mp4", tmp / f"{name}.mp4"
    for out, vf in ((main, "scale=640:360"), (sub, sub_filter)):
        if out.exists():
            continue
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(assets / "footage" / STREET), "-t", str(SECONDS),
             "-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-an", str(out)],
            check=True,
        )  # fmt: skip
    return main, sub


def camera_doc(url: str, detect_url: str | None) -> dict:
    # The kerbside camera's two kerb lanes (examples/footage.yaml), in the main stream's pixels.
    cam = {
        "id": "kerb",
        "name": "kerbside pair",
        "url": url,
        "location": {"address": "test"},
        "zones": [
            {"id": "far_kerb", "kind": "no_parking", "grade": "arterial",
             "polygon": [[0, 143], [520, 58], [520, 98], [0, 185]]},
            {"id": "near_kerb", "kind": "no_parking", "grade": "arterial",
             "polygon": [[0, 240], [640, 318], [640, 358], [0, 284]]},
        ],
        "rules": {"illegal_parking": {"dwell_s": 15}},
    }  # fmt: skip
    if detect_url:
        cam["detect_url"] = detect_url
    return {"cameras": [cam]}


def frame_at(clip: Path, t: float) -> np.ndarray:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        for vf in container.decode(stream):
            if float(vf.pts * stream.time_base) >= t - 0.02:
                return vf.to_ndarray(format="bgr24")
    raise LookupError(t)


def replay(doc: dict, main: Path, out: Path) -> list:
    camera = parse_config(doc).camera("kerb")
    sink = JsonlSink(out / "events.jsonl")
    job = ReplayJob(camera, load_detector(resolve_model(None)), out_dir=out, sinks=[sink], batch_size=4,
                    start_time=datetime(2026, 12, 7, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))  # fmt: skip
    try:
        job.run(str(main))
    finally:
        sink.close()
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def opened(events: list) -> list:
    return [e for e in events if e["state"] == "opened"]


def test_a_camera_pair_finds_the_same_parked_cars_on_the_substream_with_evidence_from_the_main_stream(assets, tmp_path):
    main, sub = pair(assets, tmp_path)
    alone = opened(replay(camera_doc(str(main), None), main, tmp_path / "main-only"))
    paired = opened(replay(camera_doc(str(main), str(sub)), main, tmp_path / "pair"))
    assert len(alone) >= 2  # the clip's parked cars, found on the main stream alone
    # The same cars, in the same zones, boxed in the main stream's pixels.
    assert sorted(e["zone"]["id"] for e in paired) == sorted(e["zone"]["id"] for e in alone)
    for e in alone:
        box = e["objects"][0]["box"]
        best = max(box_iou(box, p["objects"][0]["box"]) for p in paired if p["zone"]["id"] == e["zone"]["id"])
        assert best >= 0.7, (e["zone"]["id"], box)
    # Evidence at the main stream's resolution, and its picture is the main stream's own frame at that
    # moment, not the substream's scaled up.
    for e in paired:
        for name in ("clean", "annotated", "first"):
            picture = cv2.imread(str(tmp_path / "pair" / e["evidence"][name]))
            # the annotated picture carries its header in a strip above the frame
            assert picture.shape[1] == 640 and picture.shape[0] - 360 in (
                (0,) if name != "annotated" else range(20, 41)
            )
        clean = cv2.imread(str(tmp_path / "pair" / e["evidence"]["clean"]))
        t = e["confirmed"]["stream_s"]
        from_main = cv2.PSNR(clean, frame_at(main, t))
        from_sub = cv2.PSNR(clean, cv2.resize(frame_at(sub, t), (640, 360), interpolation=cv2.INTER_LINEAR))
        assert from_main > 33 and from_main > from_sub + 3, (from_main, from_sub)


def test_a_letterboxed_or_anamorphic_substream_maps_onto_the_main_streams_pixels(assets, tmp_path):
    """A 16:9 picture sent as a 4:3 substream, either with black bars (512x384, the picture 512x288
    between them) or stretched (704x576, as 16:9 cameras send D1): the same cars, boxed where the
    main stream alone boxes them."""
    main, _ = pair(assets, tmp_path)
    alone = opened(replay(camera_doc(str(main), None), main, tmp_path / "main-only"))
    assert len(alone) >= 2
    for name, vf in (("letterboxed", "scale=512:288,pad=512:384:0:48:black"), ("anamorphic", "scale=704:576")):
        _, sub = pair(assets, tmp_path, vf, name)
        paired = opened(replay(camera_doc(str(main), str(sub)), main, tmp_path / name))
        assert sorted(e["zone"]["id"] for e in paired) == sorted(e["zone"]["id"] for e in alone), name
        for e in alone:
            box = e["objects"][0]["box"]
            best = max(box_iou(box, p["objects"][0]["box"]) for p in paired if p["zone"]["id"] == e["zone"]["id"])
            assert best >= 0.7, (name, e["zone"]["id"], box, best)


def test_a_substream_camera_refuses_zone_crops_that_need_the_main_streams_full_picture():
    doc = camera_doc("rtsp://cam/main", "rtsp://cam/sub")
    doc["cameras"][0]["zone_crops"] = "on"
    with pytest.raises(ConfigError, match="detect_url decodes the main stream for evidence only"):
        parse_config(doc)
    doc["cameras"][0]["detect_url"] = "ftp://cam/sub"
    doc["cameras"][0].pop("zone_crops")
    with pytest.raises(ConfigError, match="detect_url.*unsupported URL scheme 'ftp'"):
        parse_config(doc)
    doc["cameras"][0]["detect_url"] = "rtsp://cam/sub"
    assert parse_config(doc).camera("kerb").zone_crops == "off"


@pytest.mark.parametrize("readers", [(), ("--reader-processes", "1")], ids=["reader-thread", "reader-process"])
def test_a_live_camera_pair_detects_on_the_substream_and_keeps_its_cases_when_the_main_stream_dies(
    rtsp_ready, marker_model, tmp_path, readers
):
    """Main stream 1280x720, substream 640x360, the same parked red 'car' on both (gone 8-14 s).
    Until the main stream is seen the camera waits (zones are in its pixels); with both up, cases
    are boxed in main-stream pixels and their pictures are the main stream's; when the main stream
    dies the camera stays live on its substream, its case stays open, and the next case's pictures
    are the substream's scaled up, counted. The same whether the substream is read by a thread of
    the daemon or in a reader process (whose frames the daemon places on the main stream it reads)."""
    present = lambda t: 1.0 <= t < 8.0 or t >= 14.0  # noqa: E731
    main_clip = encode_clip(tmp_path / "main.mp4", width=1280, height=720, seconds=60, gop=25,
                            scene=red_marker((520, 400, 760, 520), present))  # fmt: skip
    sub_clip = encode_clip(tmp_path / "sub.mp4", seconds=60, gop=25, scene=red_marker(present=present))
    main_server, sub_server = RtspServer({"main": main_clip}), RtspServer({"sub": sub_clip}).start()
    streams = pair_streams(tmp_path / "streams.yaml", main_server, sub_server)
    out = tmp_path / "out"
    daemon = DaemonProcess(streams, out, marker_model, "--jsonl", *readers).start()
    try:
        wait_for(lambda: daemon.camera_state("pair") == "backoff", 30, what="the camera waiting for its main stream")
        assert "main stream not seen yet" in json.loads(daemon.get("/readyz")[1])["cameras"]["pair"]["reason"]
        assert daemon.get("/healthz")[0] == 200  # waiting for a stream is not a dead reader
        assert daemon.metric("streetscan_frames_decoded_total", camera="pair") == 0  # the substream not dialled
        main_server.start()
        wait_for(lambda: opened(jsonl(out)), 60, what="a case on the substream")
        first = opened(jsonl(out))[0]
        assert box_iou(first["objects"][0]["box"], (520, 400, 760, 520)) >= 0.7  # in the main stream's pixels
        assert cv2.imread(str(out / first["evidence"]["clean"])).shape[:2] == (720, 1280)
        assert daemon.metric("streetscan_evidence_from_substream_total", camera="pair") == 0
        readyz = json.loads(daemon.get("/readyz")[1])
        ready = readyz["cameras"]["pair"]
        assert ready["state"] == "live" and ready["main_stream"]["state"] == "live"
        if readers:
            assert readyz["reader_processes"]["0"]["cameras"] == ["pair"]

        main_server.kill()  # the main stream dies; the substream goes on
        wait_for(
            lambda: daemon.metric("streetscan_camera_main_stream_state", camera="pair", state="backoff") == 1.0,
            30,
            what="the main stream's outage seen",
        )
        assert daemon.camera_state("pair") == "live"
        wait_for(lambda: len(opened(jsonl(out))) >= 2, 60, what="the next case, with the main stream down")
        second = opened(jsonl(out))[1]
        assert cv2.imread(str(out / second["evidence"]["clean"])).shape[:2] == (720, 1280)
        assert daemon.metric("streetscan_evidence_from_substream_total", camera="pair") >= 1
    finally:
        daemon.stop()
        main_server.kill()
        sub_server.kill()
    # The car was hidden longer than the resolve grace: its first case resolved, the second is a new
    # case, and no (event_id, revision) was sent twice.
    sent = [(e["event_id"], e["revision"]) for e in jsonl(out)]
    assert len(set(sent)) == len(sent)


def pair_streams(path: Path, main_server: RtspServer, sub_server: RtspServer) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 4,
                    "event": {"update_interval_s": 1, "resolve_grace_s": 3},
                    "reader": {"backoff_initial_s": 0.3, "backoff_max_s": 1.0, "open_timeout_s": 2.0},
                    "rules": {"illegal_parking": {"dwell_s": 1.5}},
                },
                "cameras": [
                    {"id": "pair", "name": "pair", "url": main_server.url("main"),
                     "detect_url": sub_server.url("sub"), "location": {"address": "test street"}},
                ],
            }
        )
    )  # fmt: skip
    return path


def test_a_camera_pair_is_down_while_its_substream_is_and_back_when_it_returns_whatever_the_main_stream_does(
    rtsp_ready, marker_model, tmp_path
):
    main_clip = encode_clip(tmp_path / "main.mp4", width=1280, height=720, seconds=60, gop=25,
                            scene=red_marker((520, 400, 760, 520)))  # fmt: skip
    sub_clip = encode_clip(tmp_path / "sub.mp4", seconds=60, gop=25, scene=red_marker())
    main_server, sub_server = RtspServer({"main": main_clip}).start(), RtspServer({"sub": sub_clip}).start()
    streams = pair_streams(tmp_path / "streams.yaml", main_server, sub_server)
    daemon = DaemonProcess(streams, tmp_path / "out", marker_model).start()

    def states() -> tuple[str | None, float]:
        return daemon.camera_state("pair"), daemon.metric(
            "streetscan_camera_main_stream_state", camera="pair", state="live"
        )

    try:
        wait_for(lambda: states() == ("live", 1.0), 60, what="both streams live")
        sub_server.kill()  # the substream dies: nothing to detect on, the camera is down
        wait_for(lambda: states()[0] == "backoff", 30, what="the camera down with its substream")
        assert states()[1] == 1.0 and daemon.get("/healthz")[0] == 200  # the main stream is up; no crash
        analysed = daemon.metric("streetscan_frames_analysed_total", camera="pair")
        sub_server.start()
        wait_for(lambda: states() == ("live", 1.0), 60, what="the substream back")
        wait_for(
            lambda: daemon.metric("streetscan_frames_analysed_total", camera="pair") > analysed + 4,
            30,
            what="frames analysed again",
        )
        main_server.kill()
        sub_server.kill()  # both die
        wait_for(lambda: states() == ("backoff", 0.0), 30, what="both streams down")
        ready = json.loads(daemon.get("/readyz")[1])["cameras"]["pair"]
        assert ready["state"] == "backoff" and ready["main_stream"]["state"] == "backoff"
        main_server.start()
        sub_server.start()
        wait_for(lambda: states() == ("live", 1.0), 60, what="both streams back")
    finally:
        daemon.stop()
        main_server.kill()
        sub_server.kill()


def jsonl(out: Path) -> list[dict]:
    f = out / "events.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def test_a_substream_frame_is_placed_in_main_stream_pixels_and_its_picture_says_where_it_came_from(assets):
    """One real frame as substream (512x288) and main stream (640x360): a box on the substream lands
    on the main stream's pixels; the picture is the main stream's while it has one, else the
    substream's scaled up, and then the frame says so for the evidence header."""
    from streetscan.pipeline.frames import Frame
    from streetscan.workers.mainstream import SUBSTREAM_NOTE, on_main_stream

    main_picture = frame_at(assets / "footage" / STREET, 10.0)
    sub = Frame(seq=0, decoded_index=0, pts_s=10.0, image=cv2.resize(main_picture, (512, 288)), keyframe=True)

    class Main:
        size = (640, 360)
        up = True

        def picture(self, frame, arrived):
            return main_picture if self.up else None

    main, fallbacks = Main(), []
    placed = on_main_stream(sub, main, 0.0, lambda: fallbacks.append(1))
    assert (placed.width, placed.height) == (640, 360)
    det = make_detections(np.array([[256, 144, 384, 216]], dtype=np.float32), np.array([0.9]), ["car"])
    assert placed.to_source(det).xyxy.tolist() == [[320, 180, 480, 270]]
    assert placed.full_image() is main_picture and placed.picture_note() is None and not fallbacks
    main.up = False
    placed = on_main_stream(sub, main, 0.0, lambda: fallbacks.append(1))
    assert placed.full_image().shape[:2] == (360, 640) and placed.picture_note() == SUBSTREAM_NOTE
    assert fallbacks == [1]


def test_letterbox_bars_are_told_from_a_dark_picture_and_a_black_frame_decides_nothing(assets):
    from streetscan.workers.mainstream import Placement

    picture = frame_at(assets / "footage" / STREET, 10.0)  # 640x360, the main stream
    main = (640, 360)
    boxed = cv2.copyMakeBorder(cv2.resize(picture, (512, 288)), 48, 48, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    assert Placement.of(boxed, main) == Placement((0.0, 48 / 384, 1.0, 336 / 384))
    assert Placement.of(boxed, main).crop(boxed).shape[:2] == (288, 512)
    # The same picture stretched to 4:3 and darkened as at night: no flat black bars, so anamorphic.
    night = (cv2.resize(picture, (704, 576)) * 0.2).astype(np.uint8)
    assert night.mean() > 12 and Placement.of(night, main) == Placement()
    assert Placement.unstretch(night, main).shape[:2] == (396, 704)
    assert Placement.of(np.zeros((384, 512, 3), np.uint8), main) is None  # a camera's black first frame
