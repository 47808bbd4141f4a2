"""PNG charts of cost reports and projections: the cost package's only module importing matplotlib.

Figures are drawn on the Agg canvas directly, without pyplot: no global figure state, no display needed,
safe in a server thread.
"""

from __future__ import annotations

from pathlib import Path

from leanrank.errors import DependencyError

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:
    raise DependencyError("matplotlib", "plots") from exc

from leanrank.cost.projection import Projection, gpu_capacity, gpu_month_cost
from leanrank.cost.report import CostReport


def report_chart(report: CostReport, path: Path) -> None:
    """Bars of cost per group, unpriced calls noted in the title."""
    report_figure(report).savefig(path, format="png", dpi=100)


def report_figure(report: CostReport) -> Figure:
    """The report chart; the dollar axis starts at 0 (and shows up to $1 when every cost is 0)."""
    labels = [row.key or "—" for row in report.rows]
    costs = [row.cost_usd for row in report.rows]
    fig = Figure(figsize=(max(6.0, 0.5 * len(labels) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(len(labels)), costs, color="#3b6ea8")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0, ha="right")
    ax.set_ylabel("US dollars")
    ax.set_ylim(0, None if any(costs) else 1)
    unpriced = report.total.unpriced
    note = f" ({unpriced} calls without a known price)" if unpriced else ""
    ax.set_title(f"Rerank cost by {report.by}, {report.period.label}: ${report.total.cost_usd:,.2f}{note}")
    return fig


def projection_chart(projection: Projection, path: Path) -> None:
    """Monthly cost against monthly calls (log-log): a line per API, steps per GPU, crossovers marked."""
    volume = projection.volume
    found = [c.queries_per_month for c in projection.crossovers if c.queries_per_month is not None]
    low = max(1.0, min([volume.queries_per_month, *found]) / 10)
    high = max([volume.queries_per_month, *found]) * 10
    steps = 200
    xs = [low * (high / low) ** (i / steps) for i in range(steps + 1)]
    fig = Figure(figsize=(9, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for api in projection.apis:
        if api.per_query > 0:
            mark = "" if api.price.verified else " (unverified)"
            ax.plot(xs, [x * api.per_query for x in xs], label=f"{api.price.key}{mark}")
    for gpu in projection.gpus:
        ys = [gpu_month_cost(gpu, x, volume.candidates) for x in xs]
        cap = gpu_capacity(gpu, volume.candidates)
        ax.step(
            xs,
            ys,
            where="post",
            linestyle="--",
            label=f"{gpu.key} (${gpu.usd_per_hour:g}/h, {cap:,.0f} calls/month)",
        )
    for c in projection.crossovers:
        if c.queries_per_month is not None:
            gpu_cost = next(g.month_usd for g in projection.gpus if g.key == c.gpu)
            ax.plot([c.queries_per_month], [gpu_cost], marker="o", color="black", markersize=5)
    ax.axvline(volume.queries_per_month, color="grey", linestyle=":", label="assumed volume")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rerank calls per month")
    ax.set_ylabel("US dollars per month")
    ax.set_title(
        f"{volume.candidates:g} candidates × {volume.tokens_per_candidate:g} tokens, "
        f"query {volume.query_tokens:g} tokens; ● = GPU becomes cheaper"
    )
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, format="png", dpi=100)
