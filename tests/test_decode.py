import subprocess

import av
import cv2
import numpy as np
import pytest
from conftest import encode_clip
from realparts import RtspServer

from streetscan.pipeline.decode import SourceError, VideoSource
from streetscan.pipeline.detect import make_detections


def test_samples_to_analysis_fps(h264_clip):
    src = VideoSource(str(h264_clip), analysis_fps=2)
    frames = list(src.frames())
    assert src.info.width == 640 and src.info.height == 360 and src.info.codec == "h264"
    assert abs(src.info.duration_s - 8.0) < 0.1
    assert len(frames) == 16  # 8 s at 2 fps
    assert [f.pts_s for f in frames[:4]] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.04)  # nearest frame at 25 fps
    assert frames[0].image.shape == (360, 640, 3)
    assert not src.stats.keyframe_only  # GOP 1 s > 0.5 s: decoded in full, each GOP to its last analysed frame


def test_keyframe_only_when_keyframes_suffice(h264_clip):
    src = VideoSource(str(h264_clip), analysis_fps=0.5)
    frames = list(src.frames())
    assert src.info.keyframe_interval_s == pytest.approx(1.0)
    assert src.stats.keyframe_only
    assert src.stats.decoded == 4  # keyframes every second, only every other one (the analysed) decoded
    assert [f.pts_s for f in frames] == [0.0, 2.0, 4.0, 6.0]
    assert all(f.keyframe for f in frames)


def test_unwanted_frames_are_not_decoded_nor_converted(h264_clip):
    asked = []

    def every_other(t: float) -> bool:
        asked.append(t)
        return len(asked) % 2 == 1

    key = VideoSource(str(h264_clip), analysis_fps=1, wanted=every_other)
    frames = list(key.frames())
    assert key.stats.keyframe_only and asked == pytest.approx([float(i) for i in range(8)], abs=0.04)
    assert [f.pts_s for f in frames] == pytest.approx([0.0, 2.0, 4.0, 6.0], abs=0.04)
    assert key.stats.decoded == 4 and key.stats.skipped == 4  # a skipped keyframe is never decoded
    asked.clear()
    full = VideoSource(str(h264_clip), analysis_fps=2, wanted=every_other, keyframes="never")
    frames = list(full.frames())  # every frame decoded, only the wanted converted
    assert len(frames) == 8 and full.stats.skipped == 8 and full.stats.decoded == 200 and full.stats.sampled == 8


def test_keyframe_output_is_not_held_back_by_b_frames(tmp_path):
    clip = encode_clip(tmp_path / "bframes.mp4", seconds=6, bframes=2)
    with av.open(str(clip)) as c:
        assert c.streams.video[0].codec_context.has_b_frames  # the decoder would hold frames back
    events = []
    src = VideoSource(str(clip), analysis_fps=1, wanted=lambda t: events.append(("due", round(t))) is None)
    for f in src.frames():
        events.append(("frame", round(f.pts_s)))
    # Each keyframe comes out before the next is even due: no analysis interval of added latency.
    assert src.stats.keyframe_only and events == [e for t in range(6) for e in (("due", t), ("frame", t))]


def test_keyframe_mode_can_be_turned_off(h264_clip):
    src = VideoSource(str(h264_clip), analysis_fps=0.5, keyframes="never")
    assert len(list(src.frames())) == 4 and src.stats.decoded == 200


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        VideoSource(str(tmp_path / "missing.mp4"), 2)


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        VideoSource(str(bad), 2)


def test_truncated_file_yields_what_it_can(tmp_path):
    clip = encode_clip(tmp_path / "c.ts".replace(".ts", ".mkv"), seconds=4)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    frames = list(VideoSource(str(cut), 2).frames())
    assert 2 <= len(frames) < 8


def test_decoder_scales_to_the_detector_input(h264_clip):
    src = VideoSource(str(h264_clip), analysis_fps=2, fit=(320, 320))
    frame = next(iter(src.frames()))
    assert frame.image.shape == (180, 320, 3)
    assert frame.source_size == (640, 360) and (frame.width, frame.height) == (640, 360)
    full = frame.full_image()
    assert full.shape == (360, 640, 3)
    assert frame.full_image() is full  # converted once
    # The scaled picture is the camera picture downscaled, not some other frame.
    ref = cv2.resize(full, (320, 180), interpolation=cv2.INTER_AREA)
    assert np.abs(ref.astype(int) - frame.image.astype(int)).mean() < 3
    det = make_detections(np.array([[10, 20, 110, 90]]), [0.9], ["car"])
    assert frame.to_source(det).xyxy.tolist() == [[20, 40, 220, 180]]
    assert det.xyxy.tolist() == [[10, 20, 110, 90]]  # the caller's detections are left alone


def test_decoder_never_enlarges(h264_clip):
    frame = next(iter(VideoSource(str(h264_clip), analysis_fps=2, fit=(1280, 1280)).frames()))
    assert frame.image.shape == (360, 640, 3) and frame.source_size is None
    assert frame.full_image() is frame.image


def test_sampling_takes_keyframes_slightly_early(tmp_path):
    # Keyframes every 24 frames at 25 fps (0.96 s) at 1 analysed fps: a keyframe a little before
    # its grid point is taken, so every keyframe is analysed (never every other one).
    clip = encode_clip(tmp_path / "g24.mp4", seconds=10, gop=24)
    src = VideoSource(str(clip), analysis_fps=1)
    frames = list(src.frames())
    assert src.stats.keyframe_only
    assert len(frames) == src.stats.decoded == 11  # keyframes at 0, 0.96, ... 9.6 s
    assert max(b.pts_s - a.pts_s for a, b in zip(frames, frames[1:], strict=False)) == pytest.approx(0.96)


def test_live_stream_switches_to_keyframe_only(h264_clip, rtsp_ready):
    server = RtspServer({"cam": h264_clip}).start()
    try:
        src = VideoSource(server.url("cam"), analysis_fps=0.5)
        frames = []
        for frame in src.frames():
            frames.append(frame)
            if len(frames) == 4:
                break
    finally:
        server.kill()
    assert src.info.keyframe_interval_s is None  # a live stream is not probed
    assert src.stats.keyframe_only
    # Full decode until three keyframes (1 s apart) are seen, then keyframes only: full decode
    # up to the fourth sample (6 s) would be ~150 frames.
    assert src.stats.decoded < 100
    gaps = [b.pts_s - a.pts_s for a, b in zip(frames, frames[1:], strict=False)]
    assert gaps == pytest.approx([2.0, 2.0, 2.0], abs=0.05)


@pytest.mark.integration
def test_http_flv_and_hls_streams_are_read_like_cameras(h264_clip, tmp_path):
    """Camera platforms often re-stream as HTTP-FLV or HLS: streams.yaml accepts http(s):// URLs,
    and FFmpeg (through PyAV) reads them as network streams. Served here by a real HTTP server."""
    import functools
    import subprocess
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "hls").mkdir()
    remux = ["ffmpeg", "-v", "error", "-y", "-i", str(h264_clip), "-c", "copy"]
    subprocess.run([*remux, "-f", "flv", str(tmp_path / "cam.flv")], check=True)
    subprocess.run(
        [*remux, "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", str(tmp_path / "hls" / "cam.m3u8")],
        check=True,
    )

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path in ("cam.flv", "hls/cam.m3u8"):
            src = VideoSource(f"http://127.0.0.1:{server.server_address[1]}/{path}", analysis_fps=2)
            assert src.info is None  # a network stream is probed on the connection that reads it
            frames = list(src.frames())
            assert (src.info.width, src.info.height, src.info.codec) == (640, 360, "h264"), path
            assert 15 <= len(frames) <= 16, path  # 8 s at 2 fps
            times = [f.pts_s for f in frames]
            assert times == sorted(times) and times[-1] == pytest.approx(7.5, abs=0.1), path
    finally:
        server.shutdown()


def test_an_overloaded_full_decode_stream_sheds_to_keyframes_and_comes_back(tmp_path):
    # Keyframes every 2 s, analysed at 2 fps: needs full decode. Shedding from 3 s to 9 s.
    clip = encode_clip(tmp_path / "gop2.mp4", seconds=18, fps=25, gop=50)
    clock = {"t": 0.0}

    def shed() -> bool:
        return 3.0 <= clock["t"] < 9.0

    src = VideoSource(str(clip), analysis_fps=2, shed=shed)
    assert not src.stats.keyframe_only
    times, modes, tails = [], [], []
    for f in src.frames():
        clock["t"] = f.pts_s
        times.append(round(f.pts_s, 2))
        modes.append(src.stats.shedding)
        tails.append(src.stats.tail_skipped)
    shed_times = [t for t, m in zip(times, modes, strict=False) if m]
    assert shed_times and all(abs(t / 2 - round(t / 2)) < 0.05 for t in shed_times)  # keyframes only, 2 s apart
    assert [t for t in times if 4.0 <= t < 8.0] == [4.0, 6.0]  # fewer frames while shedding
    # shed() is asked at keyframes with the clock at the last frame analysed (8 s at the 10 s keyframe):
    # full decode is back from the 12 s keyframe, at the full rate.
    after = [t for t in times if t >= 12.0]
    assert len(after) >= 4 and max(b - a for a, b in zip(after, after[1:], strict=False)) < 0.6
    assert not src.stats.shedding
    # Back in full decode, a GOP's tail after its last analysed frame is skipped again.
    assert src.stats.tail_skipped > tails[times.index(after[0])]


def test_load_shedder_enters_on_refusals_holds_then_tries_again():
    from streetscan.workers.reader import LoadShedder

    s = LoadShedder(window=4, enter_ratio=0.5, hold_s=10)
    for w in (True, True, False, True):
        s.note(w)
    assert not s.active(now=0)  # 1 of 4 refused: keeps up
    for w in (False, False):
        s.note(w)
    assert s.active(now=1) and s.active(now=10.9)
    assert not s.active(now=11.5)  # held long enough: full decode again, judged afresh
    s.note(False)
    assert not s.active(now=12)  # a full window is needed before shedding again
    s.overrun(now=13)  # ... unless decode falls behind the camera
    assert s.active(now=13.1) and not s.active(now=23.5)


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_a_gops_tail_after_its_last_analysed_frame_is_not_decoded_and_the_analysed_pictures_are_the_same(
    tmp_path, codec
):
    """A camera's 2 s GOP at 1 analysed fps (25 fps, B-frames as many cameras send; x265's default
    open GOP, whose leading pictures reference the GOP before): each GOP is decoded only up to its
    second analysed frame, about half the frames, and every analysed picture is the one a decode
    of every frame gives at that moment."""
    clip = tmp_path / f"{codec}.mp4"
    moving = encode_clip(tmp_path / "src.mp4", seconds=10, gop=250)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(moving), "-c:v", codec, "-preset", "ultrafast", "-g", "50",
         "-bf", "2", *(["-x265-params", "log-level=error"] if codec == "libx265" else ["-sc_threshold", "0"]),
         str(clip)],
        check=True,
    )  # fmt: skip
    every = VideoSource(str(clip), analysis_fps=1, keyframes="never", threads=1)
    reference = {round(f.pts_s, 2): f.image for f in every.frames()}
    assert every.stats.decoded == 250 and every.stats.tail_skipped == 0

    auto = VideoSource(str(clip), analysis_fps=1, threads=1)  # as the daemon decodes (frame threads hold frames)
    frames = list(auto.frames())
    assert not auto.stats.keyframe_only and auto.info.keyframe_interval_s == pytest.approx(2.0)
    assert [round(f.pts_s, 2) for f in frames] == sorted(reference)  # the same instants
    for f in frames:
        assert np.array_equal(f.image, reference[round(f.pts_s, 2)]), f"picture at {f.pts_s:.2f}s differs"
    assert auto.stats.decode_errors == 0
    # Each 50-frame GOP but the last decoded to its frame at 1 s (26 frames, and the decoder's reorder
    # delay) of 50; the last in full (no keyframe follows to end its tail). Every packet is decoded or
    # skipped (H.265 less the leading pictures the decoder drops after a skip).
    assert 4 * 26 + 50 <= auto.stats.decoded <= 4 * 30 + 50 and auto.stats.tail_skipped >= 4 * 20
    assert auto.stats.decoded + auto.stats.tail_skipped <= 250


def test_a_keyframe_later_than_the_gops_before_predicted_costs_a_catch_up_not_an_analysed_frame(tmp_path):
    """Keyframes at 0, 2, 4, then 7 s (a camera's variable GOP, or frames lost on the way): the
    tail held after the 5 s frame, waiting for a keyframe at 6 s, is decoded after all when the
    frame due at 6 s comes first; every analysed picture is the one of decoding every frame."""
    moving = encode_clip(tmp_path / "src.mp4", seconds=10, gop=250)
    clip = tmp_path / "irregular.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(moving), "-c:v", "libx264", "-preset", "ultrafast",
         "-g", "1000", "-sc_threshold", "0", "-force_key_frames", "0,2,4,7,9", str(clip)],
        check=True,
    )  # fmt: skip
    with av.open(str(clip)) as c:
        keys = [round(float(p.pts * p.time_base), 2) for p in c.demux(video=0) if p.pts is not None and p.is_keyframe]
    assert keys == [0.0, 2.0, 4.0, 7.0, 9.0]
    every = VideoSource(str(clip), analysis_fps=1, keyframes="never", threads=1)
    reference = [(round(f.pts_s, 2), f.image) for f in every.frames()]
    auto = VideoSource(str(clip), analysis_fps=1, threads=1)
    frames = [(round(f.pts_s, 2), f.image) for f in auto.frames()]
    assert [t for t, _ in frames] == [t for t, _ in reference] == [float(i) for i in range(10)]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(frames, reference, strict=True))
    assert auto.stats.tail_skipped > 0 and auto.stats.decoded + auto.stats.tail_skipped == 250


@pytest.mark.parametrize(
    "codec,options",
    [
        # An open-GOP H.264 camera whose fourth keyframe comes 80 ms late: the frame due at 6 s is a
        # leading B-frame of that keyframe, after it in decode order.
        ("libx264", ["-preset", "medium", "-x264-params", "open-gop=1", "-g", "1000", "-sc_threshold", "0",
                     "-force_key_frames", "0,2,4,6.08,8"]),
        # An open-GOP H.265 camera whose keyframes come a frame before the instants (49-frame GOP).
        ("libx265", ["-preset", "fast", "-g", "49", "-x265-params", "log-level=error"]),
    ],
    ids=["h264-open-gop-late-keyframe", "h265-open-gop-early-keyframes"],
)  # fmt: skip
def test_open_gop_leading_pictures_change_no_analysed_frame(tmp_path, codec, options):
    moving = encode_clip(tmp_path / "src.mp4", seconds=10, gop=250)
    clip = tmp_path / "open.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(moving), "-c:v", codec, *options, str(clip)], check=True)
    every = VideoSource(str(clip), analysis_fps=1, keyframes="never", threads=1)
    reference = [(round(f.pts_s, 2), f.image) for f in every.frames()]
    auto = VideoSource(str(clip), analysis_fps=1, threads=1)
    frames = [(round(f.pts_s, 2), f.image) for f in auto.frames()]
    assert [t for t, _ in frames] == [t for t, _ in reference]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(frames, reference, strict=True))
    assert auto.stats.tail_skipped > 0 and auto.stats.decode_errors == 0
