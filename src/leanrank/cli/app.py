"""`leanrank` command line: ingest, search, courses, delete, demo, rerank, rerank-batch, backends, pricing,
costs, index, eval, calibrate, serve.

Errors the user can fix print one line on stderr and exit with status 2; nothing prints a stack trace.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from leanrank import __version__
from leanrank.checks import LANGS, check_langs
from leanrank.cli.batch import rerank_batch_command
from leanrank.cli.calibrate import calibrate_command
from leanrank.cli.console import Steps, err, out, plural, styled, typer_app
from leanrank.cli.costs import costs_app, pricing_command
from leanrank.cli.errors import cli_errors
from leanrank.cli.eval import eval_command
from leanrank.cli.index import index_app
from leanrank.cli.rerank import backends_command, json_lines, refuse_repeated_ids, rerank_command
from leanrank.cli.serve import serve_command
from leanrank.errors import InputError, UnknownCourseError
from leanrank.index.factory import no_index_yet
from leanrank.pipeline import FileReport, IngestReport, Pipeline, SearchResult
from leanrank.rerank.identity import IdentityReranker
from leanrank.retrieve.steering import from_examples
from leanrank.settings import RerankSettings, Settings
from leanrank.types import Hit

IDENTITY = IdentityReranker.name

app = typer_app(help=__doc__)
app.command("rerank")(rerank_command)
app.command("rerank-batch")(rerank_batch_command)
app.command("backends")(backends_command)
app.command("pricing")(pricing_command)
app.add_typer(costs_app, name="costs")
app.add_typer(index_app, name="index")
app.command("serve")(serve_command)
app.command("eval")(eval_command)
app.command("calibrate")(calibrate_command)


@contextmanager
def _pipeline(settings: Settings | None = None) -> Iterator[Pipeline]:
    """Open the pipeline; turn leanrank's own errors into one line and an exit status."""
    with cli_errors(), Pipeline(settings or Settings()) as pipe:
        yield pipe


def hit_json(hit: Hit) -> dict[str, Any]:
    """The `--json` shape of one hit, the HTTP search hit's fields plus `course` (offsets index the source
    file's text as loaded: `Chunk`; `heading` is the path outermost first, `heading_path` the same joined
    with " > ")."""
    c = hit.chunk
    return {
        "chunk_id": hit.chunk_id,
        "score": hit.score,
        "text": c.text,
        "course": c.course,
        "source": c.source,
        "lang": c.lang,
        "heading": list(c.heading),
        "heading_path": c.heading_path,
        "start": c.start,
        "end": c.end,
        "tokens": c.tokens,
        "meta": c.meta,
        "stage_scores": hit.stage_scores,
    }


def _ingest(
    pipe: Pipeline, path: Path, course: str, *, prune: bool = False, root: Path | None = None
) -> IngestReport:
    files = pipe.ingest_plan(path) if path.exists() else []
    done = 0
    with Steps() as progress:
        task = progress.add_task(f"ingest {course}", total=len(files), unit="files")

        def step(report: FileReport) -> None:
            nonlocal done
            if report.status != "removed":
                done += 1
                progress.update(task, completed=done)
            if report.status == "skipped":
                progress.console.print(styled(("skipped", "yellow"), f" {report.source}: {report.reason}"))

        def embedding(chunks: int, of: int) -> None:
            """A long file moves the bar too: by the share of its chunks embedded so far."""
            progress.update(task, completed=done + chunks / of)

        report = pipe.ingest(path, course, prune=prune, root=root, on_file=step, on_embed=embedding)
    summary = (
        f"course {course}: {plural(len(report.files), 'file')} — {report.count('added')} added, "
        f"{report.count('updated')} updated, {report.count('unchanged')} unchanged, "
        f"{report.count('skipped')} skipped, {report.count('removed')} removed; "
        f"{plural(report.chunks, 'chunk')} written, {report.embedded:,} embedded"
    )
    err.print(summary)
    if report.previous_root is not None:
        err.print(
            styled(
                ("note:", "yellow"),
                f" course {course}'s folder is now {report.root} (was {report.previous_root}): its files are "
                "named relative to it; pass --root to name them relative to another",
            ),
            soft_wrap=True,
        )
    for stale in report.stale:
        err.print(
            styled(
                ("note:", "yellow"),
                f" {stale.source} was skipped (see above); the {plural(stale.kept, 'chunk')} of its "
                f"version indexed before still {'answers' if stale.kept == 1 else 'answer'} searches until "
                "it is fixed and ingested again, or removed from the folder and ingested with --prune",
            ),
            soft_wrap=True,
        )
    if report.missing:
        one = len(report.missing) == 1
        shown = ", ".join(report.missing[:3]) + (", …" if len(report.missing) > 3 else "")
        err.print(
            styled(
                ("note:", "yellow"),
                f" {plural(len(report.missing), 'indexed file')} of course {course} "
                f"{'is' if one else 'are'} no longer in {path} ({shown}); "
                f"{'it still answers' if one else 'they still answer'} searches until ingested with --prune",
            )
        )
    return report


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A file or a folder of course material.")],
    course: Annotated[str, typer.Option("--course", "-c", help="Course id the chunks belong to.")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete the course's sources that are no longer in the folder.")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="The course folder files are named relative to (default: the one recorded at the course's "
            "first folder ingest); recorded as the course's folder.",
        ),
    ] = None,
) -> None:
    """Index a file or folder into a course; unchanged files are skipped, changed ones replaced.

    A sub-folder or a file of the course folder keeps the names the whole folder gave it.
    """
    with _pipeline() as pipe:
        _ingest(pipe, path, course, prune=prune, root=root)


def _print_hits(result: SearchResult) -> None:
    if not result.retrieved:
        sent = result.served_by  # a reused answer: no retrieval, no rerank call
    elif result.served_by == IDENTITY:
        sent = f"{result.retrieved} candidates in first-stage order, not reranked"
    else:
        sent = f"{result.candidates} of {result.retrieved} candidates reranked by {result.served_by}"
    table = Table(title=styled(result.query, (f"  ({result.course}, {sent})", "dim")))
    for col in ("#", "score", "source", "heading", "lang", "text"):
        table.add_column(col, overflow="fold")
    for i, hit in enumerate(result.hits, 1):
        snippet = " ".join(hit.chunk.text.split())
        table.add_row(
            str(i),
            f"{hit.score:.3f}",
            hit.chunk.source,
            hit.chunk.heading_path,
            hit.chunk.lang,
            snippet[:160] + ("…" if len(snippet) > 160 else ""),
        )
    out.print(table)
    if result.judge_usage is not None:
        judged = result.judge_usage.documents
        said_no = judged - sum(1 for h in result.hits if h.stage_scores.get("judge") == 1.0)
        cost = "price unknown" if result.judge_cost_usd is None else f"${result.judge_cost_usd:.6f}"
        out.print(f"judge: {judged} hits judged, {said_no} do not answer ({cost})")


def _read_queries(path: Path) -> list[tuple[int, str, str]]:
    """(line number, id, query) of JSON lines with `id` and `query`; a bad line names the file and line.

    Ids must differ (as the output writes them: `2` and `"2"` are one id): callers join results by id."""
    queries = []
    for n, obj in json_lines(path, "queries"):
        try:
            qid, text = str(obj["id"]), str(obj["query"])
        except (KeyError, TypeError):
            raise InputError(f'{path}:{n}: expected a JSON object with "id" and "query"') from None
        queries.append((n, qid, text))
    refuse_repeated_ids(path, ((n, qid) for n, qid, _ in queries), "query")
    return queries


@app.command()
def search(
    course: Annotated[str, typer.Option("--course", "-c", help="Course to search in.")],
    query: Annotated[str | None, typer.Argument(help="The student's question.")] = None,
    lang: Annotated[
        list[str] | None,
        typer.Option(
            "--lang",
            help=f"Only chunks containing this language ({', '.join(LANGS)}: containing both); repeatable.",
        ),
    ] = None,
    heading: Annotated[
        str | None,
        typer.Option(
            "--heading",
            help="Only chunks under a heading path starting with this (any case, ё as е): 'lesson 2 > loop'.",
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "-k",
            min=1,
            help="Hits to return; above retrieve.depth, that many candidates are retrieved "
            f"[default: the rerank.top_k setting, {RerankSettings.model_fields['top_k'].default}].",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    judge: Annotated[
        bool | None,
        typer.Option(
            "--judge/--no-judge",
            help="Ask the LLM judge whether the top hits answer the question [default: judge.enabled].",
        ),
    ] = None,
    toward: Annotated[
        list[str] | None,
        typer.Option(
            "--toward",
            help="A chunk id or source the student works in: the dense lists move toward it (repeatable).",
        ),
    ] = None,
    away: Annotated[
        list[str] | None,
        typer.Option("--away-from", help="A chunk id or source the student ruled out (repeatable)."),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option("--queries", help="JSON lines of {id, query}, each id once: many queries in one run."),
    ] = None,
) -> None:
    """Hybrid search in one course, then the rerank step."""
    prefix = tuple(p.strip() for p in heading.split(">")) if heading else ()
    steering = from_examples(toward or (), away or ())
    with cli_errors():
        langs = check_langs([c.strip().lower() for c in lang or []])
        if query is not None and queries is not None:
            raise InputError("give either a QUERY or --queries FILE, not both")
        if query is None and queries is None:
            raise InputError("give a QUERY or --queries FILE")
        batch = None if queries is None else _read_queries(queries)
        settings = _indexed(course)
    with _pipeline(settings) as pipe:
        if batch is not None:
            for n, _, text in batch:  # every query is checked before any is answered
                try:
                    pipe.check_query(text)
                except InputError as exc:
                    raise InputError(f"{queries}:{n}: {exc}") from None
            for _, qid, text in batch:
                result = pipe.search(
                    text, course, langs=langs, heading_prefix=prefix, k=k, judge=judge, steering=steering
                )
                sys.stdout.write(
                    json.dumps({"id": qid, "hits": [hit_json(h) for h in result.hits]}, ensure_ascii=False)
                    + "\n"
                )
            return
        assert query is not None  # checked above
        result = pipe.search(
            query, course, langs=langs, heading_prefix=prefix, k=k, judge=judge, steering=steering
        )
        if not result.hits and langs:
            err.print(
                f"no chunk of course {course} is in {' or '.join(langs)}: the --lang filter left nothing"
            )
        if as_json:
            for hit in result.hits:
                sys.stdout.write(json.dumps(hit_json(hit), ensure_ascii=False) + "\n")
        else:
            _print_hits(result)


def _indexed(course: str) -> Settings:
    """The settings, once there is an index; with none yet, `course` is unknown. A command that only reads
    or removes must not open the store to find that out: opening creates it (and the data directory)."""
    settings = Settings()
    if no_index_yet(settings):
        raise UnknownCourseError(course)
    return settings


@app.command()
def courses() -> None:
    """List indexed courses with their chunk counts."""
    with cli_errors():
        settings = Settings()
        fresh = no_index_yet(settings)  # listing must not create the index (nor the data directory)
    counts: dict[str, int] = {}
    if not fresh:
        with _pipeline(settings) as pipe:
            counts = pipe.courses()
    if not counts:
        out.print("no courses indexed yet")
        return
    table = Table("course", "chunks")
    for name, n in sorted(counts.items()):
        table.add_row(name, str(n))
    out.print(table)


@app.command()
def delete(
    course: Annotated[str, typer.Option("--course", "-c", help="Course to remove.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove every chunk of a course; on a terminal, asks first unless --yes."""
    with cli_errors():
        settings = _indexed(course)
    with _pipeline(settings) as pipe:
        n = pipe.courses().get(course)
        if n and not yes and sys.stdin.isatty():
            typer.confirm(f"Delete course {course} ({plural(n, 'chunk')})?", abort=True, err=True)
        n = pipe.delete_course(course)
        err.print(f"deleted course {course}: {plural(n, 'chunk')}")


@app.command()
def demo() -> None:
    """Ingest the bundled bilingual sample course into a fresh store and answer its sample questions."""
    package = Path(str(resources.files("leanrank")))
    course_dir = package / "sample_course"
    questions = json.loads((package / "sample_questions.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="leanrank-demo-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        with _pipeline(settings) as pipe:
            _ingest(pipe, course_dir, "demo")
            found = 0
            for q in questions:
                result = pipe.search(q["query"], "demo", k=3)
                _print_hits(result)
                top = result.hits[0].chunk.source if result.hits else None
                ok = top == q["expect_source"]
                found += ok
                mark = ("✓", "green") if ok else ("✗", "red")
                out.print(styled(mark, f" expected {q['expect_source']}, top hit {top}\n"))
            score = (f"{found}/{len(questions)}", "bold")
            out.print(styled(score, " questions answered from the expected lesson"))


def _version(show: bool) -> None:
    if show:
        typer.echo(f"leanrank {__version__}")
        raise typer.Exit


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass  # the options above are eager; the commands do the work


def main() -> None:
    app()
