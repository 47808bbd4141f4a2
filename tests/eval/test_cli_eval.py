"""`leanrank eval` registered on a Typer app exactly as `leanrank.cli.app` registers it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from leanrank.cli.eval import eval_command, priced_models
from leanrank.index.edge import stored_meta
from leanrank.settings import Settings
from tests.eval.conftest import write_beir

app = typer.Typer()
app.command("eval")(eval_command)


@app.callback()
def main() -> None:
    """A group, as the real app is: `eval` is named on the command line."""


@pytest.fixture(autouse=True)
def no_project_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no leanrank.toml from the working directory


def test_eval_writes_the_report(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    args = ["eval", "-d", f"beir:{beir}", "-o", str(out), "-c", "default,dense-20", "--limit", "3"]
    result = CliRunner().invoke(
        app, [*args, "--silver", "--reference", "identity", "--price", "cohere:rerank-v3.5"]
    )
    assert result.exit_code == 0, result.output
    assert "# leanrank eval: `beir:" in result.stdout
    assert "| dense-20 | dense | 20 | identity |" in result.stdout
    # Cohere bills one search unit per 100 documents: 20 documents a query are one unit, $2 per 1,000 units.
    assert "| default | $2.00 |" in result.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["queries"] == 3
    assert report["reference"] == "identity"
    assert {p.name for p in (out / "runs").iterdir()} >= {"default.trec", "dense-20.trec", "reference.trec"}
    assert (out / "cost_quality.png").exists()


@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        (["-d", "nope:x"], "unknown dataset 'nope:x'", 2),
        (["-d", "beir:missing"], "corpus.jsonl: cannot read", 2),
        (["-d", "beir:missing", "-c", "naive,turbo"], "unknown configuration 'turbo'", 2),
        (["-d", "beir:missing", "--price", "acme:fast"], "no price for 'acme:fast'; priced models:", 2),
    ],
)
def test_bad_input_is_one_line_and_an_exit_status(
    tmp_path: Path, args: list[str], message: str, status: int
) -> None:
    """Input errors exit 2 and configuration errors 1, as everywhere in the `leanrank` CLI."""
    result = CliRunner().invoke(app, ["eval", *args, "-o", str(tmp_path / "out")])
    assert result.exit_code == status
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_learned_sparse_is_switched_on_by_configuration(
    tmp_path: Path, tiny_bge_m3_dir: Path, tiny_xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LEANRANK_SPARSE=bge-m3 with a `bge-m3:` encoder: the pool is indexed with the model's lexical
    weights; without the model's sparse head the run stops with a one-line error."""
    beir = write_beir(tmp_path / "tiny")
    data = tmp_path / "pool"
    monkeypatch.setenv("LEANRANK_ENCODER", f"bge-m3:{tiny_bge_m3_dir}")
    monkeypatch.setenv("LEANRANK_SPARSE", "bge-m3")
    args = ["eval", "-d", f"beir:{beir}", "-o", str(tmp_path / "out"), "-c", "hybrid-20", "--limit", "3"]
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["queries"] == 3
    assert stored_meta(data / "index") == {
        "schema": 2,
        "dim": 32,
        "encoder": str(tiny_bge_m3_dir),
        "sparse": "bge-m3",
    }
    monkeypatch.setenv("LEANRANK_ENCODER", f"bge-m3:{tiny_xlmr_dir}")  # no sparse head
    failed = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "other")])
    assert failed.exit_code == 2  # a setting to fix
    assert "has no sparse_linear.pt" in failed.stderr.splitlines()[-1]  # after transformers' load bar
    assert "Traceback" not in failed.output


def test_the_default_prices_are_rerank_models_only(tmp_path: Path) -> None:
    """The judge's chat models filled three columns of `$ per 1,000 queries` at their input rate."""
    settings = Settings(data_dir=tmp_path)
    keys = [m.key for m in priced_models(settings)]
    assert "cohere:rerank-v3.5" in keys
    assert "voyage:rerank-2.5-lite" in keys
    assert not [k for k in keys if k.startswith("chat:")]
    assert [m.key for m in priced_models(settings, ["chat:gpt-4o-mini"])] == ["chat:gpt-4o-mini"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (["-o", "afile"], "error: --out afile is not a folder"),
        (["-o", "afile/report"], "error: --out afile/report is under afile, which is not a folder"),
        (["-o", "out", "--data-dir", "afile"], "error: --data-dir afile is not a folder"),
        pytest.param(
            ["-o", "/proc/leanrank/report"],
            "error: --out /proc/leanrank/report: cannot write into /proc (",
            marks=pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc"),
        ),
    ],
)
def test_an_output_it_cannot_write_is_refused_before_the_run(
    tmp_path: Path, where: list[str], message: str
) -> None:
    """Checked first, so a run of hours does not end in a traceback: one line, status 2, nothing made."""
    beir = write_beir(tmp_path / "tiny")
    (tmp_path / "afile").write_text("not a folder", encoding="utf-8")
    pool = [] if "--data-dir" in where else ["--data-dir", "pool"]
    result = CliRunner().invoke(app, ["eval", "-d", f"beir:{beir}", *where, *pool])
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "tiny"]  # no pool encoded, no report


def test_a_report_it_cannot_write_after_the_run_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    """`out/runs` is a file: checked writable up front, the folder still cannot take the runs. The files
    are written beside it and moved in only once all are whole, so nothing of the report lands."""
    beir = write_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs").write_text("mine", encoding="utf-8")
    args = ["eval", "-d", f"beir:{beir}", "-o", str(out), "-c", "naive", "--limit", "1"]
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "pool")])
    assert result.exit_code == 2
    assert f"error: cannot write the report to {out}: File exists ({out}/runs)" in " ".join(
        result.stderr.split()
    )
    assert "Traceback" not in result.output
    assert [p.name for p in out.iterdir()] == ["runs"]
    assert (out / "runs").read_text(encoding="utf-8") == "mine"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging folder left
