"""Real street footage with a real object added: the scene-change tests' clips.

`edited_clip` re-encodes a staged clip ($STREETSCAN_ASSETS/footage) as H.264 with `edit(t, img)`
applied to every frame; `garbage_crop` cuts a garbage pile out of a real photograph of the staged
cn_garbage_bins dataset (its YOLO box), `person_crop` a standing person out of a real street frame.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def edited_clip(src: Path, dst: Path, edit, *, fps: int = 5, seconds: float | None = None, hold_s: float = 0.0) -> Path:
    """`src` re-encoded at `fps` with `edit(t, img)` drawing on each frame (BGR, in place); its
    first `seconds` only when given, then its last frame held `hold_s` more (a street at rest)."""
    out = av.open(str(dst), "w")
    with av.open(str(src)) as inp:
        vs = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = vs.codec_context.width, vs.codec_context.height, "yuv420p"
        stream.options = {"g": str(2 * fps), "preset": "ultrafast", "bf": "0"}
        stream.time_base = Fraction(1, fps)
        i = 0
        for frame in inp.decode(vs):
            t = float(frame.pts * vs.time_base)
            if t + 1e-6 < i / fps:
                continue
            if seconds is not None and t >= seconds:
                break
            img = frame.to_ndarray(format="bgr24")
            last = img.copy()
            edit(i / fps, img)
            _encode(out, stream, img, i)
            i += 1
        for _ in range(round(hold_s * fps)):
            img = last.copy()
            edit(i / fps, img)
            _encode(out, stream, img, i)
            i += 1
        for packet in stream.encode():
            out.mux(packet)
    out.close()
    return dst


def _encode(out, stream, img: np.ndarray, i: int) -> None:
    vf = av.VideoFrame.from_ndarray(img, format="bgr24")
    vf.pts = i
    for packet in stream.encode(vf):
        out.mux(packet)


def garbage_crop(dataset: Path, index: int = 0) -> np.ndarray:
    """The `index`-th garbage pile of the dataset's train split that fills a quarter to half of its photo."""
    found = 0
    for label in sorted((dataset / "labels" / "train").glob("*.txt")):
        for line in label.read_text().splitlines():
            c, x, y, w, h = (float(v) for v in line.split())
            if c == 0 and 0.25 < w < 0.6 and 0.25 < h < 0.6:
                if found == index:
                    img = cv2.imread(str(dataset / "images" / "train" / f"{label.stem}.jpg"))
                    H, W = img.shape[:2]
                    return img[int((y - h / 2) * H) : int((y + h / 2) * H), int((x - w / 2) * W) : int((x + w / 2) * W)]
                found += 1
    raise LookupError(f"no garbage pile number {index} in {dataset}")


def paste(img: np.ndarray, obj: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = cv2.resize(obj, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)


TRICYCLE_CLIP = "pavement_crowd_gathering_india.mp4"
TRICYCLE_BOX = (184, 35, 227, 77)  # an auto-rickshaw parked at the far kerb, 3 s into the clip (640 x 360)


def tricycle_crop(footage: Path) -> np.ndarray:
    """A real three-wheeler (auto-rickshaw, 三轮车) cut from a real street camera's frame: an object
    the project's own model was never taught (its card maps `tricycle` to null)."""
    cap = cv2.VideoCapture(str(footage / TRICYCLE_CLIP))
    cap.set(cv2.CAP_PROP_POS_MSEC, 3000)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise LookupError(f"{footage / TRICYCLE_CLIP}: no frame at 3 s")
    x1, y1, x2, y2 = TRICYCLE_BOX
    return frame[y1:y2, x1:x2].copy()
