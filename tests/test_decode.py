import pytest

from streetscan.pipeline.decode import SourceError, VideoSource

from conftest import encode_clip


def test_samples_to_analysis_fps(h264_clip):
    src = VideoSource(str(h264_clip), analysis_fps=2)
    frames = list(src.frames())
    assert src.info.width == 640 and src.info.height == 360 and src.info.codec == "h264"
    assert abs(src.info.duration_s - 8.0) < 0.1
    assert len(frames) == 16  # 8 s at 2 fps
    assert [f.pts_s for f in frames[:4]] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.04)  # nearest frame at 25 fps
    assert frames[0].image.shape == (360, 640, 3)
    assert src.stats.decoded == 200 and not src.stats.keyframe_only  # GOP 1 s > 0.5 s: all decoded


def test_keyframe_only_when_keyframes_suffice(h264_clip):
    src = VideoSource(str(h264_clip), analysis_fps=0.5)
    frames = list(src.frames())
    assert src.info.keyframe_interval_s == pytest.approx(1.0)
    assert src.stats.keyframe_only
    assert src.stats.decoded == 8  # one keyframe per second, nothing else decoded
    assert [f.pts_s for f in frames] == [0.0, 2.0, 4.0, 6.0]
    assert all(f.keyframe for f in frames)


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
