"""`leanrank costs report|project` and `leanrank pricing`: what reranking cost, and what it would cost.

Registered by the main app as `app.add_typer(costs_app, name="costs")` and
`app.command("pricing")(pricing_command)`. Errors print one line on stderr (status 2 for the user's input,
1 otherwise), never a stack trace.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from leanrank.cli.console import err, out, styled, typer_app
from leanrank.cli.errors import cli_errors
from leanrank.cli.outputs import check_file, writing
from leanrank.cost.ledger import GroupBy, Ledger, Total
from leanrank.cost.period import Period
from leanrank.cost.pricing import GpuPrice, ModelPrice, Pricing
from leanrank.cost.projection import Projection, Volume, api_cost, gpu_capacity, measured_volume, project
from leanrank.cost.report import CostReport, cost_report, round_usd
from leanrank.errors import InputError
from leanrank.settings import Settings

costs_app = typer_app(help="Rerank cost: ledger reports, projections.")
_N = TypeVar("_N", int, float)

# A course of ~100 students asking ~20 questions a month each; a one-sentence question.
DEFAULT_QUERIES_PER_COURSE_MONTH = 2_000.0
DEFAULT_COURSES = 10
DEFAULT_QUERY_TOKENS = 20.0


def _chart(draw: Callable[[Path], None], path: Path) -> None:
    """Draw into `path` (checked by `check_file` before the work) through a temporary file beside it, so a
    failed write leaves no half a PNG; a missing `plots` extra or a failed write is one line."""
    tmp = path.with_name(f".{path.name}.tmp")
    with cli_errors(), writing("the chart", path):
        try:
            draw(tmp)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    err.print(f"chart written to {path}")


def _period(text: str | None) -> Period:
    return Period.parse(text) if text else Period.month_of(datetime.now(UTC))


def _tokens(total: Total) -> int:
    return total.query_tokens + total.document_tokens


def _total_json(total: Total) -> dict[str, Any]:
    return {
        "key": total.key,
        "calls": total.calls,
        "requests": total.requests,
        "documents": total.documents,
        "cache_hits": total.cache_hits,
        "query_tokens": total.query_tokens,
        "document_tokens": total.document_tokens,
        "cost_usd": round_usd(total.cost_usd),
        "unpriced": total.unpriced,
        "documents_received": total.documents_received,
        "full_cost_usd": round_usd(total.full_cost_usd),
        "saved_usd": round_usd(total.saved_usd),
        "unconfirmed": total.unconfirmed,
        "unconfirmed_usd": round_usd(total.unconfirmed_usd),
    }


def _print_report(report: CostReport) -> None:
    if not report.rows:
        out.print(f"no rerank calls recorded in {report.period.label}")
        return
    table = Table(title=f"Rerank cost by {report.by}, {report.period.label} (UTC)")
    table.add_column(report.by, overflow="fold")
    columns = ("calls", "requests", "received", "documents", "cache hits", "tokens", "cost, $", "saved, $")
    for col in (*columns, "unpriced"):
        table.add_column(col, justify="right")
    total = report.total
    for row in (*report.rows, total):
        name = styled(("total", "bold")) if row is total else (row.key or "—")
        table.add_row(
            name,
            f"{row.calls:,}",
            f"{row.requests:,}",
            f"{row.documents_received:,}",
            f"{row.documents:,}",
            f"{row.cache_hits:,}",
            f"{_tokens(row):,}",
            f"{row.cost_usd:,.4f}",
            f"{row.saved_usd:,.4f}",
            f"{row.unpriced:,}" if row.unpriced else "",
            end_section=row is report.rows[-1],
        )
    out.print(table)
    if total.unpriced:
        out.print(f"{total.unpriced} calls have no known price and are not in the cost")
    if total.unconfirmed:
        out.print(
            f"{total.unconfirmed} calls may have been billed without an answer used (timeout, unusable "
            f"answer, client gone): ${total.unconfirmed_usd:,.4f} at the estimate, included in the cost"
        )


@costs_app.command("report")
def report_command(
    by: Annotated[
        GroupBy, typer.Option("--by", help="Group by course, backend, UTC day or tenant.")
    ] = "course",
    period: Annotated[
        str | None,
        typer.Option(
            "--period", help="YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD (UTC); default: this month."
        ),
    ] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="Also draw a bar chart into this PNG file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Totals from the cost ledger for one period: calls, documents, tokens and dollars.

    `received` counts the documents clients sent to the gateway and `documents` those reranked; `saved`
    is what the gateway's cascade saved (the cost had every received document been sent, less the cost).
    """
    with cli_errors():
        if png is not None:
            check_file(png, "--png")
        chosen = _period(period)
        settings = Settings()
        if Ledger.missing(settings):  # nothing recorded; a report must not create the ledger
            report = CostReport(by, chosen, ())
        else:
            with Ledger.from_settings(settings) as ledger:
                report = cost_report(ledger, by, chosen)
    if as_json:
        body = {
            "by": by,
            "period": chosen.label,
            "rows": [_total_json(r) for r in report.rows],
            "total": _total_json(report.total),
        }
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
    else:
        _print_report(report)
    if png is not None:

        def draw(path: Path) -> None:
            from leanrank.cost.plots import report_chart  # needs the plots extra: inside _chart's guard

            report_chart(report, path)

        _chart(draw, png)


def _base_volume(settings: Settings, from_ledger: bool, period: str | None) -> tuple[Volume, str]:
    """The volume to start from and where it came from."""
    if from_ledger:
        chosen = _period(period)
        if Ledger.missing(settings):  # as measured_volume says of an empty period, without creating it
            raise InputError(f"no rerank calls recorded in {chosen.label}")
        with Ledger.from_settings(settings) as ledger:
            return measured_volume(ledger, chosen), f"measured in {chosen.label}"
    if period is not None:
        raise InputError("--period needs --from-ledger")
    assumed = Volume(
        DEFAULT_QUERIES_PER_COURSE_MONTH,
        DEFAULT_COURSES,
        settings.retrieve.depth,
        settings.ingest.max_tokens,
        DEFAULT_QUERY_TOKENS,
    )
    return assumed, "assumed"


def _say_assumed(base: Volume, given: tuple[float | None, ...]) -> None:
    """Name every value the projection assumed, with the flag or setting that changes it (`--json` gives
    them all, with `origin`)."""
    sources = (
        (base.queries_per_course_month, "calls per course-month", "--queries-per-course-month"),
        (base.courses, "courses", "--courses"),
        (base.candidates, "candidates per call", "--candidates or retrieve.depth"),
        (base.tokens_per_candidate, "tokens per candidate", "--tokens-per-candidate or ingest.max_tokens"),
        (base.query_tokens, "query tokens", "--query-tokens"),
    )
    assumed = [
        f"{value:,g} {what} ({flag})"
        for (value, what, flag), g in zip(sources, given, strict=True)
        if g is None
    ]
    if assumed:
        out.print(
            f"assumed: {'; '.join(assumed)}; --from-ledger uses what the ledger measured", soft_wrap=True
        )


def _given(value: _N | None, default: _N) -> _N:
    return default if value is None else value


def _gpus(
    pricing: Pricing, keys: list[str] | None, usd_per_hour: float | None, pairs: float | None
) -> list[GpuPrice]:
    if keys:
        unknown = [k for k in keys if k not in pricing.gpus]
        if unknown:
            raise InputError(f"unknown GPU {', '.join(unknown)}; `leanrank pricing` lists them")
        chosen = [pricing.gpus[k] for k in keys]
    else:
        chosen = list(pricing.gpus.values())
    return [
        replace(
            g,
            usd_per_hour=_given(usd_per_hour, g.usd_per_hour),
            pairs_per_second=_given(pairs, g.pairs_per_second),
        )
        for g in chosen
    ]


def _money(value: float) -> str:
    """Dollars to a millionth; a cost too small to show there is "<0.000001", never a paid call at "0"."""
    if 0 < value < 0.0000005:
        return "<0.000001"
    return f"{value:,.2f}" if value >= 1 else f"{value:.6f}".rstrip("0").rstrip(".")


def _print_projection(p: Projection, origin: str) -> None:
    v = p.volume
    out.print(
        styled(
            (f"{v.queries_per_course_month:,.0f}", "bold"),
            " calls per course-month × ",
            (f"{v.courses}", "bold"),
            f" courses = {v.queries_per_month:,.0f} calls a month; {v.candidates:g} candidates × "
            f"{v.tokens_per_candidate:g} tokens, query {v.query_tokens:g} tokens ({origin})",
        )
    )
    apis = Table(title="Paid rerank APIs, cheapest first")
    apis.add_column("backend", overflow="fold")
    for col in ("$ / call", "$ / course-month", "$ / month"):
        apis.add_column(col, justify="right")
    apis.add_column("price as of")
    for a in p.apis:
        mark: tuple[str | tuple[str, str], ...] = () if a.price.verified else (" ", ("unverified", "yellow"))
        apis.add_row(
            a.price.key,
            _money(a.per_query),
            _money(a.per_course_month),
            _money(a.per_month),
            styled(str(a.price.as_of), *mark),
        )
    out.print(apis)
    if not p.gpus:
        return
    gpus = Table(
        title="Self-hosted GPU: always on, one card; the API becomes dearer above these monthly calls"
    )
    gpus.add_column("backend", overflow="fold")
    for g in p.gpus:
        example = " (example)" if g.example else ""
        gpus.add_column(
            f"{g.key}{example}\n${g.usd_per_hour:g}/h = ${g.month_usd:,.0f}/month\n"
            f"{g.pairs_per_second:g} pairs/s = {gpu_capacity(g, v.candidates):,.0f} calls/month",
            justify="right",
        )
    for a in p.apis:
        cells = []
        for c in p.crossovers:
            if c.api != a.price.key:
                continue
            if c.queries_per_month is None:
                cells.append("never")
            else:
                courses = f" ({c.courses:,.1f} courses)" if c.courses is not None else ""
                cells.append(f"{c.queries_per_month:,.0f}{courses}")
        gpus.add_row(a.price.key, *cells)
    out.print(gpus)


def _projection_json(p: Projection, origin: str) -> dict[str, Any]:
    v = p.volume
    return {
        "volume": {
            "queries_per_course_month": v.queries_per_course_month,
            "courses": v.courses,
            "queries_per_month": v.queries_per_month,
            "candidates": v.candidates,
            "tokens_per_candidate": v.tokens_per_candidate,
            "query_tokens": v.query_tokens,
            "origin": origin,
            "unconfirmed_calls": v.unconfirmed_calls,
        },
        "apis": [
            {
                "backend": a.price.key,
                "per_query_usd": a.per_query,
                "per_course_month_usd": a.per_course_month,
                "per_month_usd": a.per_month,
                "verified": a.price.verified,
                "as_of": a.price.as_of.isoformat(),
            }
            for a in p.apis
        ],
        "gpus": [
            {
                "gpu": g.key,
                "usd_per_hour": g.usd_per_hour,
                "month_usd": g.month_usd,
                "pairs_per_second": g.pairs_per_second,
                "capacity_queries_per_month": gpu_capacity(g, v.candidates),
                "example": g.example,
            }
            for g in p.gpus
        ],
        "crossovers": [
            {"backend": c.api, "gpu": c.gpu, "queries_per_month": c.queries_per_month, "courses": c.courses}
            for c in p.crossovers
        ],
    }


@costs_app.command("project")
def project_command(
    queries_per_course_month: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help=f"Rerank calls per course and month [default: {DEFAULT_QUERIES_PER_COURSE_MONTH:g}].",
        ),
    ] = None,
    courses: Annotated[int | None, typer.Option(min=1, help=f"Courses [default: {DEFAULT_COURSES}].")] = None,
    candidates: Annotated[
        int | None, typer.Option(min=1, help="Documents per call [default: the retrieve.depth setting].")
    ] = None,
    tokens_per_candidate: Annotated[
        float | None,
        typer.Option(min=0.0, help="Tokens per document [default: the ingest.max_tokens setting]."),
    ] = None,
    query_tokens: Annotated[
        float | None, typer.Option(min=0.0, help=f"Tokens per query [default: {DEFAULT_QUERY_TOKENS:g}].")
    ] = None,
    from_ledger: Annotated[
        bool,
        typer.Option("--from-ledger", help="Start from the volume the ledger measured; flags override it."),
    ] = False,
    period: Annotated[
        str | None, typer.Option("--period", help="Ledger period for --from-ledger; default: this month.")
    ] = None,
    gpu: Annotated[
        list[str] | None,
        typer.Option("--gpu", help="GPU price key, e.g. selfhost:h100 [default: every one]."),
    ] = None,
    gpu_usd_per_hour: Annotated[
        float | None, typer.Option(min=0.0, help="Override the GPUs' hourly price (use with --gpu).")
    ] = None,
    pairs_per_second: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Override the GPUs' throughput in (query, document) pairs per second at your pair length "
            "[default: each GPU's pairs_per_second in the price files; the packaged ones are rough "
            "estimates for bge-reranker-v2-m3 in fp16: measure yours].",
        ),
    ] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="Also plot cost against volume into this PNG.")
    ] = None,
    cut_to: Annotated[
        int | None,
        typer.Option(
            "--cut-to",
            min=1,
            help="Also price the same traffic with this many candidates per call, and the saving.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
) -> None:
    """Monthly cost of a rerank volume at every priced API, and the volume above which a GPU is cheaper."""
    with cli_errors():
        if png is not None:
            check_file(png, "--png")
        settings = Settings()
        base, origin = _base_volume(settings, from_ledger, period)
        volume = replace(
            base,
            queries_per_course_month=_given(queries_per_course_month, base.queries_per_course_month),
            courses=_given(courses, base.courses),
            candidates=_given(candidates, base.candidates),
            tokens_per_candidate=_given(tokens_per_candidate, base.tokens_per_candidate),
            query_tokens=_given(query_tokens, base.query_tokens),
        )
        if from_ledger and volume != base:
            origin += ", with overrides"
        pricing = Pricing.from_settings(settings)
        gpus = _gpus(pricing, gpu, gpu_usd_per_hour, pairs_per_second)
        projection = project((m for m in pricing.models.values() if m.is_rerank), gpus, volume)
    cut = _cut(projection, volume, cut_to) if cut_to is not None else []
    if as_json:
        body = _projection_json(projection, origin)
        if cut_to is not None:
            body["cut_to"] = {"candidates": cut_to, "apis": cut}
        sys.stdout.write(json.dumps(body) + "\n")
    else:
        _print_projection(projection, origin)
        if volume.unconfirmed_calls:
            out.print(
                f"{volume.unconfirmed_calls:,} of the measured calls may have been billed without an answer "
                "used (timeout, unusable answer, client gone): counted as calls, at the tokens of their "
                "estimate",
                soft_wrap=True,
            )
        if not from_ledger:
            _say_assumed(
                base,
                given=(queries_per_course_month, courses, candidates, tokens_per_candidate, query_tokens),
            )
        if cut_to is not None:
            _print_cut(volume, cut_to, cut)
    if png is not None:

        def draw(path: Path) -> None:
            from leanrank.cost.plots import projection_chart

            projection_chart(projection, path)

        _chart(draw, png)


def _cut(projection: Projection, volume: Volume, cut_to: int) -> list[dict[str, Any]]:
    """Each API's monthly cost per course before and after sending `cut_to` candidates instead."""
    fewer = replace(volume, candidates=cut_to)
    rows = []
    for api in projection.apis:
        after = api_cost(api.price, fewer)
        saving = 1 - after.per_month / api.per_month if api.per_month else 0.0
        rows.append(
            {
                "backend": api.price.key,
                "per_course_month": api.per_course_month,
                "per_course_month_after": after.per_course_month,
                "per_month_after": after.per_month,
                "saving": saving,
            }
        )
    return rows


def _print_cut(volume: Volume, cut_to: int, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{volume.candidates:g} → {cut_to} candidates per call")
    for col in ("backend", "$ / course-month", f"at {cut_to}", "saving"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for row in rows:
        table.add_row(
            row["backend"],
            f"{row['per_course_month']:,.2f}",
            f"{row['per_course_month_after']:,.2f}",
            f"{row['saving']:.0%}",
        )
    out.print(table)


# Columns besides the backend's name need about this many characters, URLs folded.
_PRICE_COLUMNS_WIDTH = 72


def _print_prices(models: list[ModelPrice]) -> None:
    """A table where the longest backend name fits whole; on a narrower terminal, a block per model, since
    a backend name folded mid-word cannot be copied into a setting."""
    verified: dict[bool, str | tuple[str, str]] = {True: "yes", False: ("no", "yellow")}
    if out.width >= max((len(m.key) for m in models), default=0) + _PRICE_COLUMNS_WIDTH:
        table = Table(title="Rerank API prices")
        table.add_column("backend", no_wrap=True)
        for col in ("price, USD", "unit", "as of", "verified", "source"):
            table.add_column(col, overflow="fold")
        for m in models:
            table.add_row(m.key, f"{m.price:g}", m.unit, str(m.as_of), styled(verified[m.verified]), m.source)
        out.print(table)
        return
    out.print(styled(("Rerank API prices", "bold")))
    for m in models:
        out.print(styled((m.key, "bold")))
        out.print(
            styled(f"  {m.price:g} USD {m.unit}, as of {m.as_of}, verified: ", verified[m.verified]),
            overflow="fold",
        )
        if m.source:  # a user's price may name none
            out.print(f"  {m.source}", overflow="fold")


def pricing_command(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
) -> None:
    """List the rerank prices in use (packaged and your own files) with their dates and sources."""
    with cli_errors():
        pricing = Pricing.from_settings(Settings())
    every = sorted(pricing.models.values(), key=lambda m: m.key)
    models = [m for m in every if m.is_rerank]
    chat = [m for m in every if not m.is_rerank]
    gpus = sorted(pricing.gpus.values(), key=lambda g: g.key)
    if as_json:

        def entry(m: ModelPrice) -> dict[str, Any]:
            return {
                "key": m.key,
                "unit": m.unit,
                "price": m.price,
                **({} if m.is_rerank else {"output_price": m.output_price}),
                "currency": "USD",
                "as_of": m.as_of.isoformat(),
                "source": m.source,
                "verified": m.verified,
                "note": m.note,
            }

        body = {
            "models": [entry(m) for m in models],
            "judge_models": [entry(m) for m in chat],
            "gpus": [
                {
                    "key": g.key,
                    "unit": "per_gpu_hour",
                    "price": g.usd_per_hour,
                    "currency": "USD",
                    "pairs_per_second": g.pairs_per_second,
                    "as_of": g.as_of.isoformat(),
                    "source": g.source,
                    "verified": g.verified,
                    "example": g.example,
                    "note": g.note,
                }
                for g in gpus
            ],
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    _print_prices(models)
    if chat:
        judge_table = Table(title="LLM judge prices (USD per 1M tokens)")
        for col in ("model", "input", "output", "as of", "source"):
            judge_table.add_column(col, overflow="fold")
        for m in chat:
            judge_table.add_row(m.key, f"{m.price:g}", f"{m.output_price:g}", str(m.as_of), m.source)
        out.print(judge_table)
    if gpus:
        gpu_table = Table(title="Self-hosted GPUs")
        for col in ("gpu", "USD / hour", "pairs/s", "as of", "kind", "source"):
            gpu_table.add_column(col, overflow="fold")
        for g in gpus:
            status = "verified" if g.verified else ("unverified", "yellow")
            kind = styled("example" if g.example else status)
            gpu_table.add_row(
                g.key, f"{g.usd_per_hour:g}", f"{g.pairs_per_second:g}", str(g.as_of), kind, g.source
            )
        out.print(gpu_table)
    out.print("Override or add prices with TOML files in cost.pricing_dir (default <data_dir>/pricing).")
