"""The overview's charts, drawn on the server by Matplotlib as SVG: no chart script for the
browser to fetch, so the console works on a command centre's network with no internet access."""

from __future__ import annotations

import io
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
# Text stays text in the SVG: the browser draws it with its own fonts, so Chinese labels need no
# CJK font in Matplotlib (drawn as paths, they came out as boxes without one).
matplotlib.rcParams["svg.fonttype"] = "none"
from collections.abc import Callable  # noqa: E402

from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..pipeline.catalogue import CATALOGUE  # noqa: E402

Translate = Callable[[str], str]

_SIZE = (7.0, 2.6)


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    return buf.getvalue()


def _empty(fig: Figure, text: str) -> bytes:
    fig.text(0.5, 0.5, text, ha="center", va="center", color="#777")
    return _svg(fig)


def cases_per_day(rows: list[tuple[str, str, int]], t: Translate) -> bytes:
    """Stacked bars: cases first seen per local day, one colour per scene class (legend: codes)."""
    fig = Figure(figsize=_SIZE)
    if not rows:
        return _empty(fig, t("no_cases"))
    days = sorted({d for d, _, _ in rows})
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for day, code, n in rows:
        counts[code][day] = n
    ax = fig.add_subplot()
    bottom = [0] * len(days)
    cmap = matplotlib.colormaps["tab20"]
    for i, code in enumerate(c for c in CATALOGUE if c in counts):
        heights = [counts[code].get(d, 0) for d in days]
        ax.bar([d[5:] for d in days], heights, bottom=bottom, label=code, color=cmap(i % 20))
        bottom = [b + h for b, h in zip(bottom, heights, strict=False)]
    ax.set_ylabel(t("cases"))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def cases_per_camera(rows: list[tuple[str, int, int]], t: Translate, most: int = 20) -> bytes:
    """Per camera (the `most` busiest), two bars side by side: all its cases, and those still open."""
    fig = Figure(figsize=(_SIZE[0], max(1.6, 0.45 * min(len(rows), most) + 0.8)))
    if not rows:
        return _empty(fig, t("no_cases"))
    rows = rows[:most][::-1]
    ax = fig.add_subplot()
    at = list(range(len(rows)))
    ax.barh([y + 0.2 for y in at], [r[1] for r in rows], height=0.4, color="#9bb7d4", label=t("total_cases"))
    ax.barh([y - 0.2 for y in at], [r[2] for r in rows], height=0.4, color="#d9534f", label=t("open_now"))
    ax.set_yticks(at, [r[0] for r in rows])
    ax.set_xlabel(t("cases"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)
