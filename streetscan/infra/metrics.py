"""Prometheus metrics of a running pipeline (live or replay).

Counters and histograms are updated by the stages as they work; values that are a property of
the moment (frame age, queue and spool depth, camera state) are read at scrape time through
callbacks, so nothing has to keep a gauge in step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Upper bound of the bucket holding quantile q; `buckets` are cumulative (le, count) pairs
    ending with +Inf, as Prometheus exposes them. 0 when nothing was observed."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return 0.0


class _Live(Collector):
    """Gauges read at scrape time from callbacks returning {label values: value}."""

    def __init__(self):
        self._gauges: list[tuple[str, str, tuple[str, ...], Callable[[], dict[tuple[str, ...], float]]]] = []

    def add(self, name: str, doc: str, labels: tuple[str, ...], fn: Callable[[], dict[tuple[str, ...], float]]) -> None:
        self._gauges.append((name, doc, labels, fn))

    def collect(self):
        for name, doc, labels, fn in self._gauges:
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            try:
                values = fn()
            except Exception:  # a scrape must never take the daemon down
                log.exception("metrics callback %s failed", name)
                continue
            for label_values, value in values.items():
                family.add_metric(list(label_values), value)
            yield family


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        cam = ["camera"]
        self.frames_decoded = Counter("streetscan_frames_decoded", "Frames decoded per camera", cam, registry=r)
        self.frames_sampled = Counter(
            "streetscan_frames_sampled", "Frames sampled for analysis per camera", cam, registry=r
        )
        self.frames_analysed = Counter(
            "streetscan_frames_analysed", "Frames through detection and rules per camera", cam, registry=r
        )
        self.frames_dropped = Counter(
            "streetscan_frames_dropped",
            "Sampled frames dropped: superseded by a newer frame before inference took them, "
            "or not decoded while a recent one still waited for inference",
            cam,
            registry=r,
        )
        self.frames_not_detected = Counter(
            "streetscan_frames_not_detected",
            "Analysed frames the camera's motion gate kept from the detector (nothing moved where the "
            "rules look); they keep the last detections",
            cam,
            registry=r,
        )
        self.evidence_from_substream = Counter(
            "streetscan_evidence_from_substream",
            "Evidence pictures of a camera with a substream taken from the substream, scaled up, because "
            "its main stream had no picture at that moment (down, or not yet seen)",
            cam,
            registry=r,
        )
        self.decode_errors = Counter(
            "streetscan_decode_errors", "Corrupt packets or frames per camera", cam, registry=r
        )
        self.reconnects = Counter(
            "streetscan_reconnects", "Times a camera was dialled again after a failure", cam, registry=r
        )
        self.frame_age = Histogram(
            "streetscan_frame_age_at_analysis_seconds",
            "Time from a frame's arrival to the end of its analysis",
            registry=r,
            buckets=AGE_BUCKETS,
        )
        self.batch_size = Histogram(
            "streetscan_inference_batch_size",
            "Frames per batched inference call",
            ["worker"],
            registry=r,
            buckets=BATCH_BUCKETS,
        )
        self.inference_latency = Histogram(
            "streetscan_inference_latency_seconds", "Wall time of one batched inference call", ["worker"], registry=r
        )
        self.events = Counter("streetscan_events", "Events emitted", ["scene_class", "state"], registry=r)
        # Supervision (督) per responsible unit: opened, overdue, verified, resolved ... revisions. The
        # unit label's values are streams.yaml's units (a bounded set); "" where none is configured.
        self.unit_events = Counter(
            "streetscan_unit_events",
            "Events per responsible unit and state (overdue: a deadline check found the case still there)",
            ["unit", "state"],
            registry=r,
        )
        self.spool_write_failures = Counter(
            "streetscan_spool_write_failures",
            "Times a camera's events could not be saved to the spool (a full "
            "disk); they wait in memory and are saved in order later",
            cam,
            registry=r,
        )
        self.sink_delivered = Counter("streetscan_sink_delivered", "Events delivered per sink", ["sink"], registry=r)
        self.sink_errors = Counter(
            "streetscan_sink_errors", "Failed deliveries per sink (the event stays spooled)", ["sink"], registry=r
        )
        self.sink_dead_letters = Counter(
            "streetscan_sink_dead_letters",
            "Events a sink refused for good (kept in the spool's dead letters)",
            ["sink"],
            registry=r,
        )
        self.evidence_pruned = Counter(
            "streetscan_evidence_pruned", "Evidence folders deleted by retention", registry=r
        )
        self.live = _Live()
        r.register(self.live)

    def forget_camera(self, camera_id: str) -> None:
        """Drop a removed camera's series so a fleet that changes for months does not grow them."""
        for metric in (
            self.frames_decoded,
            self.frames_sampled,
            self.frames_analysed,
            self.frames_dropped,
            self.frames_not_detected,
            self.evidence_from_substream,
            self.decode_errors,
            self.reconnects,
        ):
            try:
                metric.remove(camera_id)
            except KeyError:
                pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
