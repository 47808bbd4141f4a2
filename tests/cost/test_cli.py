"""The cost commands registered on a tiny app exactly as the main app registers them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from leanrank.cli.console import typer_app
from leanrank.cli.costs import costs_app, pricing_command
from leanrank.cost.ledger import Ledger
from tests.cost.conftest import make_record

app = typer_app()
app.add_typer(costs_app, name="costs")
app.command("pricing")(pricing_command)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no leanrank.toml from elsewhere
    monkeypatch.setenv("LEANRANK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")  # tables fold long keys at the default 80
    return tmp_path / "data"


@pytest.fixture
def seeded(data_dir: Path) -> Path:
    with Ledger(f"sqlite:///{data_dir / 'ledger.sqlite'}") as ledger:
        ledger.record(make_record("a", course="c1", documents=20, query_tokens=20, document_tokens=3200))
        ledger.record(make_record("b", course="c2", documents=20, query_tokens=20, document_tokens=3200))
        ledger.record(
            make_record("c", course="c2", cost_usd=None, backend="tei:http://gpu", model="http://gpu")
        )
    return data_dir


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_pricing_lists_models_and_gpus(data_dir: Path) -> None:
    body = run_json("pricing")
    cohere = next(m for m in body["models"] if m["key"] == "cohere:rerank-v3.5")
    assert (cohere["price"], cohere["unit"], cohere["verified"]) == (2.0, "per_1k_search_units", True)
    assert {g["key"] for g in body["gpus"]} == {"selfhost:h100", "selfhost:l4"}
    # The judge's chat models are listed apart, with both prices: they are no rerank API.
    assert not any(m["key"].startswith("chat:") for m in body["models"])
    mini = next(m for m in body["judge_models"] if m["key"] == "chat:gpt-4o-mini")
    assert (mini["price"], mini["output_price"]) == (0.15, 0.6)
    table = run("pricing")
    assert table.exit_code == 0
    assert "cohere:rerank-v3.5" in table.stdout
    assert "example" in table.stdout
    rerank_part, judge_part = table.stdout.split("LLM judge prices")
    assert "chat:gpt-4o-mini" in judge_part
    assert "chat:" not in rerank_part


def test_report_json_and_table(seeded: Path) -> None:
    with Ledger(f"sqlite:///{seeded / 'ledger.sqlite'}") as ledger:  # a call that may have been billed
        ledger.record(make_record("d", course="c1", stage="rerank:unconfirmed", cost_usd=0.002))
    body = run_json("costs", "report", "--by", "course", "--period", "2026-11")
    rows = [(r["key"], r["calls"], r["cost_usd"], r["unpriced"], r["unconfirmed"]) for r in body["rows"]]
    assert rows == [("c1", 2, pytest.approx(0.006), 0, 1), ("c2", 2, 0.004, 1, 0)]
    assert body["total"]["cost_usd"] == pytest.approx(0.010)
    assert body["total"]["unconfirmed_usd"] == pytest.approx(0.002)
    table = run("costs", "report", "--by", "backend", "--period", "2026-11")
    assert table.exit_code == 0
    assert "tei:http://gpu" in table.stdout
    assert "total" in table.stdout
    assert "1 calls have no known price" in table.stdout
    assert "1 calls may have been billed without an answer used" in table.stdout
    assert "$0.0020 at the estimate" in table.stdout


def test_report_json_rounds_money_to_ten_decimals(data_dir: Path) -> None:
    """`costs report --json` printed the sums' float noise: 0.1 + 0.2 was `0.30000000000000004`."""
    with Ledger(f"sqlite:///{data_dir / 'ledger.sqlite'}") as ledger:
        for rid, cost in (("a", 0.1), ("b", 0.2), ("c", 1 / 3)):
            ledger.record(make_record(rid, course="c1", cost_usd=cost, full_cost_usd=cost))
    result = run("costs", "report", "--period", "2026-11", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    whole = round(0.3 + 1 / 3, 10)
    for part in (body["rows"][0], body["total"]):
        assert (part["cost_usd"], part["full_cost_usd"], part["saved_usd"]) == (whole, whole, 0.0)
    assert "0000000000" not in result.stdout


def test_report_png(seeded: Path, tmp_path: Path) -> None:
    result = run("costs", "report", "--by", "day", "--period", "2026-11", "--png", str(tmp_path / "r.png"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")


def test_report_of_an_empty_period(seeded: Path) -> None:
    result = run("costs", "report", "--period", "2026-10")
    assert (result.exit_code, result.stdout.strip()) == (0, "no rerank calls recorded in 2026-10")


def test_project_assumed_volume_by_hand(data_dir: Path) -> None:
    body = run_json("costs", "project", "--candidates", "20", "--tokens-per-candidate", "160")
    assert body["volume"]["queries_per_month"] == 2000 * 10
    cohere = next(a for a in body["apis"] if a["backend"] == "cohere:rerank-v3.5")
    assert cohere["per_month_usd"] == pytest.approx(0.002 * 20_000)
    cross = next(
        c for c in body["crossovers"] if (c["backend"], c["gpu"]) == ("cohere:rerank-v3.5", "selfhost:h100")
    )
    assert cross["queries_per_month"] == pytest.approx(2.5 * 730 / 0.002)
    assert not any(a["backend"].startswith("chat:") for a in body["apis"])  # the judge reranks nothing


def test_project_names_every_value_it_assumed(data_dir: Path) -> None:
    result = run("costs", "project", "--courses", "3", "--query-tokens", "15")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == (
        "assumed: 2,000 calls per course-month (--queries-per-course-month); 20 candidates per call "
        "(--candidates or retrieve.depth); 160 tokens per candidate (--tokens-per-candidate or "
        "ingest.max_tokens); --from-ledger uses what the ledger measured"
    )


def test_project_help_shows_its_defaults() -> None:
    help_text = " ".join(run("costs", "project", "--help").stdout.split())
    assert "Rerank calls per course and month [default: 2000]." in help_text
    assert "Courses [default: 10]." in help_text


def test_project_gpu_overrides(data_dir: Path) -> None:
    body = run_json(
        "costs", "project", "--candidates", "20", "--gpu", "selfhost:h100", "--gpu-usd-per-hour", "1",
        "--pairs-per-second", "100",
    )  # fmt: skip
    assert [g["gpu"] for g in body["gpus"]] == ["selfhost:h100"]
    assert body["gpus"][0]["capacity_queries_per_month"] == pytest.approx(100 * 3600 * 730 / 20)
    cross = next(c for c in body["crossovers"] if c["backend"] == "cohere:rerank-v3.5")
    assert cross["queries_per_month"] == pytest.approx(730 / 0.002)


def test_project_from_ledger_with_an_override(seeded: Path) -> None:
    body = run_json("costs", "project", "--from-ledger", "--period", "2026-11", "--courses", "50")
    volume = body["volume"]
    assert (volume["courses"], volume["candidates"], volume["tokens_per_candidate"]) == (
        50,
        (20 + 20 + 120) / 3,
        160,
    )
    assert volume["queries_per_course_month"] == pytest.approx(3 / 2)
    assert volume["origin"] == "measured in 2026-11, with overrides"


def test_project_from_ledger_says_how_many_calls_were_possibly_billed(seeded: Path) -> None:
    """A timed-out call recorded at its estimate (what the meter writes: 20 + 3,200 tokens) counts as a call
    of those tokens, and the projection says it is one."""
    with Ledger(f"sqlite:///{seeded / 'ledger.sqlite'}") as ledger:
        ledger.record(
            make_record(
                "d", course="c1", stage="rerank:unconfirmed", documents=20, query_tokens=20,
                document_tokens=3200, cost_usd=0.002, count_source="estimate",
            )
        )  # fmt: skip
    volume = run_json("costs", "project", "--from-ledger", "--period", "2026-11")["volume"]
    assert (volume["unconfirmed_calls"], volume["queries_per_course_month"]) == (1, 2.0)
    assert volume["candidates"] == (20 + 20 + 120 + 20) / 4
    assert volume["query_tokens"] == (20 + 20 + 12 + 20) / 4
    table = run("costs", "project", "--from-ledger", "--period", "2026-11")
    assert table.exit_code == 0, table.output
    assert (
        "1 of the measured calls may have been billed without an answer used (timeout, unusable answer, "
        "client gone): counted as calls, at the tokens of their estimate"
    ) in table.stdout
    assert "may have been billed" not in run("costs", "project").stdout


def test_project_table_shows_a_tiny_paid_cost_as_below_a_millionth(data_dir: Path) -> None:
    """11 tokens a call at $0.01 per million is $0.00000011: the table must not price a paid call at 0."""
    result = run(
        "costs", "project", "--candidates", "1", "--tokens-per-candidate", "10", "--query-tokens", "1"
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "deepinfra:Qwen/Qwen3-Reranker-0.6B" in line)
    assert row.split("│")[2].strip() == "<0.000001"


def test_project_table_and_png(data_dir: Path, tmp_path: Path) -> None:
    result = run("costs", "project", "--png", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    assert "cohere:rerank-v3.5" in result.stdout
    assert "unverified" in result.stdout
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("costs", "report", "--period", "November"), 2, "error: period 'November': expected YYYY-MM"),
        (("costs", "report", "--period", "9999-12-31"), 2, "error: period '9999-12-31': the last day"),
        (("costs", "project", "--period", "2026-11"), 2, "error: --period needs --from-ledger"),
        (("costs", "project", "--gpu", "selfhost:tpu"), 2, "error: unknown GPU selfhost:tpu"),
        (
            ("costs", "project", "--png", "/nonexistent/dir/p.png"),
            2,
            "error: --png /nonexistent/dir/p.png: there is no folder /nonexistent/dir",
        ),
        (("costs", "report", "--png", "."), 2, "error: --png . is a folder, not a file"),
        (
            ("costs", "project", "--from-ledger", "--period", "2026-10"),
            2,
            "error: no rerank calls recorded in 2026-10",
        ),
    ],
)
def test_errors_are_one_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], status: int, message: str
) -> None:
    monkeypatch.delenv("COLUMNS")  # one line even where rich would wrap at 80 columns
    result = run(*args)
    assert result.exit_code == status
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.output


def test_bad_settings_are_one_line(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setenv("LEANRANK_COST__LEDGER_URL", "mysql://u:pw@h/db")
    result = run("costs", "report")
    assert (result.exit_code, result.stderr.strip()) == (
        2,
        "error: ledger database mysql://u:***@h/db: only sqlite and postgresql are supported",
    )
    monkeypatch.setenv("LEANRANK_COST__BUDGETS", '[{"scope": "planet", "name": "x", "hard_usd": 1}]')
    result = run("pricing")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid setting cost.budgets.0.scope")


def test_a_broken_price_file_is_named(data_dir: Path) -> None:
    (data_dir / "pricing").mkdir(parents=True)
    (data_dir / "pricing" / "mine.toml").write_text('provider = "cohere"\n')
    result = run("pricing")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: price file {data_dir / 'pricing' / 'mine.toml'}: price: Field required"
    )


def test_the_seeds_scenario_in_one_command(data_dir: Path) -> None:
    """$0.02/M and $10 a course is 500 M tokens; 100 → 20 candidates saves 80%; a $0.01/M model halves it."""
    body = run_json(
        "costs", "project", "--courses", "1", "--queries-per-course-month", "10000",
        "--candidates", "100", "--tokens-per-candidate", "500", "--query-tokens", "0", "--cut-to", "20",
    )  # fmt: skip
    rows = {row["backend"]: row for row in body["cut_to"]["apis"]}
    at_2_cents = rows["voyage:rerank-2.5-lite"]  # $0.02 per million tokens
    assert at_2_cents["per_course_month"] == pytest.approx(10_000 * 100 * 500 * 0.02 / 1e6) == 10.0
    assert at_2_cents["per_course_month_after"] == pytest.approx(2.0)
    assert at_2_cents["saving"] == pytest.approx(0.8)
    at_1_cent = rows["siliconflow:Qwen/Qwen3-Reranker-0.6B"]  # $0.01 per million tokens
    assert at_1_cent["per_course_month_after"] == pytest.approx(1.0)


def test_a_report_piped_to_a_file_keeps_every_number_whole(
    seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off a terminal rich assumed 80 columns and folded cells, `0.0040` into `0.0…`."""
    monkeypatch.delenv("COLUMNS")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    piped = subprocess.run(
        [sys.executable, "-m", "leanrank.cli", "costs", "report", "--by", "backend", "--period", "2026-11"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert "…" not in piped.stdout
    [cohere] = [line for line in piped.stdout.splitlines() if "cohere:rerank-v3.5" in line]
    assert [cell.strip() for cell in cohere.split("│")[1:-1]] == [
        "cohere:rerank-v3.5",
        "2",
        "2",
        "40",
        "40",
        "0",
        "6,440",
        "0.0080",
        "0.0000",
        "",
    ]
