"""Detection: images in, `sv.Detections` in source pixels and StreetScan vocabulary out.

One `Detector` interface; one decoder per model family (Frigate's `model_type` convention) on
a runtime the device picks (ONNX Runtime, or PyTorch for Ultralytics checkpoints). Detector
classes that the card's class map does not name are dropped here, so no later stage ever sees a
class the rules do not know.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort
import supervision as sv

from .models import ModelCard, ModelError, vocabulary
from .preprocess import Letterbox, input_size, letterbox


class Detector(Protocol):
    card: ModelCard

    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]: ...


def empty_detections() -> sv.Detections:
    d = sv.Detections.empty()
    d.data["class_name"] = np.array([], dtype=object)
    return d


def make_detections(xyxy: np.ndarray, confidence: np.ndarray, objects: Sequence[str]) -> sv.Detections:
    """Detections in the vocabulary: class_id indexes models/vocabulary.yaml, class_name is its name."""
    if len(xyxy) == 0:
        return empty_detections()
    vocab = vocabulary()
    return sv.Detections(
        xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray(confidence, dtype=np.float32),
        class_id=np.array([vocab.index(o) for o in objects], dtype=int),
        data={"class_name": np.array(list(objects), dtype=object)},
    )


# Where and with what inference runs. ONNX Runtime runs every family on its execution providers
# (in order of preference); PyTorch runs Ultralytics checkpoints (fp16 on CUDA), the GPU path
# that needs no onnxruntime-gpu wheel.
ONNX_DEVICES = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
TORCH_DEVICES = {"torch-cpu": "cpu", "torch-cuda": "cuda"}
DEVICES = (*ONNX_DEVICES, *TORCH_DEVICES)


def providers_for(device: str) -> list[str]:
    if device not in ONNX_DEVICES:
        raise ModelError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    wanted, have = ONNX_DEVICES[device], ort.get_available_providers()
    if wanted[0] not in have:
        raise ModelError(
            f"device {device!r} needs ONNX Runtime's {wanted[0]}, which this onnxruntime lacks "
            f"(it has {', '.join(have)}); install onnxruntime-gpu on a machine with CUDA, "
            f"or use torch-cuda"
        )
    return [p for p in wanted if p in have]


class Runtime(Protocol):
    input_shape: tuple[int | None, ...]  # None where the graph takes any size

    def run(self, x: np.ndarray) -> list[np.ndarray]: ...


class OnnxRuntime:
    def __init__(self, weights: Path, device: str, threads: int | None):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Inference shares the cores with decode and analysis threads. ORT's idle pool threads
        # otherwise spin between calls, burning the cores those threads need: measured on the demo
        # replays (2 cores, interleaved), spinning cost 15-25 % more CPU for the same frames and
        # up to 19 % wall time once analysis ran on its own thread (benchmarks/RESULTS.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(weights), sess_options=opts, providers=providers_for(device))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})


class TorchRuntime:
    """An Ultralytics checkpoint through its AutoBackend (fused, fp16 on CUDA). Its raw output is
    the ONNX export's, so the yolo decoder serves both."""

    def __init__(self, weights: Path, device: str, threads: int | None):
        try:
            import torch
            from ultralytics.nn.autobackend import AutoBackend
        except ImportError:
            raise ModelError("torch devices need PyTorch and Ultralytics: scripts/setup.sh --train") from None
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelError("device 'torch-cuda': PyTorch sees no CUDA GPU here")
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device)
        self.model = AutoBackend(str(weights), device=self.device, fp16=device == "cuda", fuse=True, verbose=False)
        self.model.eval()
        self.input_shape: tuple[int | None, ...] = (None, 3, None, None)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        with self._torch.inference_mode():
            y = self.model(self._torch.from_numpy(x).to(self.device))
        y = y[0] if isinstance(y, (list, tuple)) else y
        return [y.float().cpu().numpy()]


def make_runtime(card: ModelCard, device: str, threads: int | None) -> Runtime:
    if device in TORCH_DEVICES:
        if card.family != "yolo" or card.torch_weights is None:
            raise ModelError(
                f"device {device!r} runs Ultralytics checkpoints; the card of {card.name!r} names none (torch_weights)"
            )
        if not card.torch_weights.exists():
            raise ModelError(
                f"{card.torch_weights} named by {card.card_path} is missing; "
                f"scripts/export_yolo.py writes it beside the ONNX"
            )
        return TorchRuntime(card.torch_weights, TORCH_DEVICES[device], threads)
    return OnnxRuntime(card.weights, device, threads)


class ModelDetector:
    """What every family shares: a runtime, batching by input size, tensor packing, class mapping."""

    def __init__(
        self,
        card: ModelCard,
        *,
        conf_threshold: float | None = None,
        iou_threshold: float = 0.5,
        threads: int | None = None,
        device: str = "cpu",
    ):
        self.card = card
        # The card's calibrated floor: what the tracker's low-score stage may still use.
        self.conf_threshold = card.thresholds.detect if conf_threshold is None else conf_threshold
        self.iou_threshold = iou_threshold
        self.device = device
        self.runtime = make_runtime(card, device, threads)
        batch_dim = self.runtime.input_shape[0]
        self.max_batch = card.max_batch if batch_dim is None else batch_dim
        # Detector class index -> vocabulary object, for mapped classes only.
        self.mapped = {i: card.class_map[n] for i, n in enumerate(card.class_names) if n in card.class_map}
        self._mean = np.array(card.mean, dtype=np.float32)
        self._inv_std = 1.0 / np.array(card.std, dtype=np.float32)
        # One scale for all channels lets blobFromImage apply it; per-channel std is applied after.
        self._uniform_std = bool(np.all(self._inv_std == self._inv_std[0]))

    def input_size(self, image: np.ndarray) -> tuple[int, int]:
        h, w = image.shape[:2]
        return input_size(w, h, self.card.input_width, self.card.input_height, self.card.rect)

    def _to_tensor(self, images: list[np.ndarray]) -> np.ndarray:
        """Letterboxed BGR uint8 pictures (all one size) -> the model's float batch.

        OpenCV's blobFromImage does the channel swap, mean, scale and HWC->CHW in one C++ pass
        per picture, about 4x faster than the same arithmetic in NumPy on the whole batch."""
        h, w = images[0].shape[:2]
        rgb = self.card.color == "RGB"
        scale = float(self._inv_std[0]) if self._uniform_std else 1.0
        if self.card.layout == "NCHW":
            x = np.empty((len(images), 3, h, w), dtype=np.float32)
            for k, img in enumerate(images):
                # blobFromImage subtracts `mean` after the swap, so it is given in the model's order.
                x[k] = cv2.dnn.blobFromImage(img, scale, mean=tuple(self.card.mean), swapRB=rgb)[0]
            if not self._uniform_std:
                x *= self._inv_std[None, :, None, None]
            return x
        x = np.empty((len(images), h, w, 3), dtype=np.float32)
        for k, img in enumerate(images):
            np.copyto(x[k], cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if rgb else img, casting="unsafe")
        x -= self._mean
        x *= self._inv_std
        return x

    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        results: list[sv.Detections | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            by_size.setdefault(self.input_size(img), []).append(i)
        for size, idxs in by_size.items():
            for start in range(0, len(idxs), self.max_batch):
                chunk = idxs[start : start + self.max_batch]
                boxed = [letterbox(images[i], size) for i in chunk]
                outputs = self.runtime.run(self._to_tensor([b[0] for b in boxed]))
                for j, i in enumerate(chunk):
                    results[i] = self._decode(outputs, j, boxed[j][1])
        return results  # type: ignore[return-value]

    def _decode(self, outputs: list[np.ndarray], index: int, lb: Letterbox) -> sv.Detections:
        raise NotImplementedError

    def _finish(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, lb: Letterbox, nms: bool) -> sv.Detections:
        """Keep mapped classes above threshold, class-aware NMS if the family needs it, map back."""
        keep = (conf >= self.conf_threshold) & np.isin(cls, list(self.mapped))
        xyxy, conf, cls = xyxy[keep], conf[keep], cls[keep]
        if len(conf) and nms:
            wh = np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=1)
            idx = cv2.dnn.NMSBoxesBatched(
                wh.tolist(), conf.tolist(), cls.tolist(), self.conf_threshold, self.iou_threshold
            )
            picked = np.asarray(idx, dtype=int).reshape(-1)
            xyxy, conf, cls = xyxy[picked], conf[picked], cls[picked]
        return make_detections(lb.to_source(xyxy.astype(np.float32)), conf, [self.mapped[int(c)] for c in cls])


class YoloDetector(ModelDetector):
    """Ultralytics YOLO (v8/11) ONNX export: output [B, 4 + nc, anchors], boxes cx, cy, w, h."""

    def _decode(self, outputs, index, lb):
        pred = outputs[0][index].T  # anchors x (4 + nc)
        mapped_cols = np.array(sorted(self.mapped), dtype=int)
        scores = pred[:, 4 + mapped_cols]
        best = scores.argmax(axis=1)
        conf = scores[np.arange(len(scores)), best]
        keep = conf >= self.conf_threshold
        pred, conf, cls = pred[keep], conf[keep], mapped_cols[best[keep]]
        cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        return self._finish(xyxy, conf, cls, lb, nms=True)


class CenterNetDetector(ModelDetector):
    """MobileNetV3-CenterNet (TF.js COCO bootstrap): output [1, K, 6] = x1, y1, x2, y2, score, class,
    already peak-picked, so no NMS."""

    def _decode(self, outputs, index, lb):
        det = outputs[0][index]
        return self._finish(det[:, :4].copy(), det[:, 4], det[:, 5].astype(int), lb, nms=False)


DETECTORS = {"yolo": YoloDetector, "centernet": CenterNetDetector}


def load_detector(card: ModelCard, **kwargs) -> ModelDetector:
    return DETECTORS[card.family](card, **kwargs)
