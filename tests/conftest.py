"""Shared fixtures: real redis-server, real encoded H.264 clips, a real (untrained) YOLO ONNX model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from marker_model import build_marker_model
from realparts import REPO, RedisServer, encode_clip, free_port, rtsp_server_available  # noqa: F401


def _required_in_ci(what: str) -> None:
    """Outside CI a missing external part skips; in CI it fails, so nothing is silently untested."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (.ci/run installs it)")
    pytest.skip(f"{what} not available")


def assets_dir() -> Path | None:
    value = os.environ.get("STREETSCAN_ASSETS")
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture(scope="session")
def assets() -> Path:
    d = assets_dir()
    if d is None:
        pytest.skip("shared assets absent: set STREETSCAN_ASSETS to the folder holding footage/ and datasets/")
    return d


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    if shutil.which("redis-server") is None:
        _required_in_ci("redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def rtsp_ready() -> None:
    missing = rtsp_server_available()
    if missing:
        _required_in_ci(missing)


@pytest.fixture(scope="session")
def marker_model(tmp_path_factory) -> Path:
    try:
        import onnx  # noqa: F401
    except ImportError:
        _required_in_ci("onnx (pip install -e '.[train]')")
    return build_marker_model(tmp_path_factory.mktemp("marker-model"))


@pytest.fixture(scope="session")
def h264_clip(tmp_path_factory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("clips") / "moving_box.mp4")


@pytest.fixture(scope="session")
def untrained_yolo(tmp_path_factory) -> Path:
    """A real yolo11n ONNX graph with random weights, exported by the project's own script."""
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        _required_in_ci("ultralytics (pip install -e '.[train]')")
    out = tmp_path_factory.mktemp("models")
    env = {**os.environ, "YOLO_CONFIG_DIR": str(out / "cfg")}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "export_yolo.py"),
            "yolo11n.yaml",
            "--untrained",
            "--name",
            "yolo11n-untrained",
            "--out",
            str(out),
        ],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "yolo11n-untrained.yaml"


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium through chromedriver, headless, one per test module."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        _required_in_ci("chromium and chromium-driver (Debian packages)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--lang=zh-CN",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
