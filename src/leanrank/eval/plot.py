"""The cost/quality chart: the only module that imports matplotlib, drawing on the Agg canvas.

A figure object with its own Agg canvas, rather than pyplot, leaves no global backend or figure state
behind in the process that asked for a chart (a CLI run, a test, a notebook).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from leanrank.errors import DependencyError

try:
    from matplotlib.artist import Artist
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:
    raise DependencyError("matplotlib", "eval") from exc

_MARKERS = "osD^vPX*<>"


@dataclass(frozen=True, slots=True)
class PlotPoint:
    """One configuration under one way of costing it (`series`: a priced model, or tokens)."""

    config: str
    series: str
    cost: float
    quality: float


def cost_quality_chart(
    points: Sequence[PlotPoint], frontier: Sequence[int], path: Path, *, xlabel: str, ylabel: str, title: str
) -> None:
    """Colour per series, marker per configuration, log cost axis; frontier points (indices into `points`)
    joined by a line and labelled with their configuration, so the chart stays readable with many models.
    """
    fig = Figure(figsize=(10.0, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    configs = list(dict.fromkeys(p.config for p in points))
    series = list(dict.fromkeys(p.series for p in points))
    colours = {s: f"C{i % 10}" for i, s in enumerate(series)}
    markers = {c: _MARKERS[i % len(_MARKERS)] for i, c in enumerate(configs)}
    for p in points:
        ax.scatter(p.cost, p.quality, color=colours[p.series], marker=markers[p.config], zorder=2)
    if frontier:
        front = [points[i] for i in frontier]
        ax.plot([p.cost for p in front], [p.quality for p in front], color="black", lw=1, ls="--", zorder=1)
        labels: dict[tuple[float, float], list[str]] = {}
        for p in front:  # models that price a configuration alike share one point: one label
            names = labels.setdefault((p.cost, p.quality), [])
            names.extend([p.config] if p.config not in names else [])
        for (cost, quality), names in labels.items():
            ax.annotate(
                ", ".join(names), (cost, quality), textcoords="offset points", xytext=(5, 4), fontsize=7
            )
    handles: list[Artist] = [ax.scatter([], [], color=colours[s], marker="o", label=s) for s in series]
    handles += [ax.scatter([], [], color="grey", marker=markers[c], label=c) for c in configs]
    handles += ax.plot([], [], color="black", lw=1, ls="--", label="Pareto frontier")
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
