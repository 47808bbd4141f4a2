"""The spend dashboard over a real loopback service and a seeded ledger: its data endpoint (admin only),
its public page and assets, and the page itself in a real headless browser (Debian's chromium, driven by
selenium through chromedriver): it loads with the admin key, shows the ledger's numbers, draws every chart
and refuses a wrong key.

Without a chromium binary the browser test skips (local development); CI sets `CI_BROWSER_REQUIRED=1`
(`.ci/run` installs chromium first), which turns that skip into a failure.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from leanrank.cost.ledger import Ledger, LedgerRecord
from leanrank.pipeline import Pipeline
from leanrank.serve import create_app
from leanrank.settings import BudgetSettings, CostSettings
from tests.serve.conftest import ADMIN_KEY, DEMO_KEY, settings_for
from tests.serve.live import LiveServer

OCT_1 = datetime(2026, 10, 1, tzinfo=UTC)
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]  # dashboard.js's first colours
BUDGETS = [
    BudgetSettings(scope="course", name="*", period="month", soft_usd=0.01, hard_usd=0.02),
    BudgetSettings(scope="tenant", name="ops", period="day", hard_usd=1.0),
]


def record(request_id: str, time: datetime, **fields: Any) -> LedgerRecord:
    values: dict[str, Any] = {
        "time": time,
        "request_id": request_id,
        "course": "demo",
        "tenant": "teacher-demo",
        "stage": "rerank",
        "backend": "cohere:rerank-v3.5",
        "model": "rerank-v3.5",
        "documents": 40,
        "query_tokens": 10,
        "document_tokens": 4_000,
        "billed_units": 1.0,
        "billed_unit": "search_units",
        "cost_usd": 0.002,
        "latency_ms": 120.0,
        "cache_hits": 0,
        "count_source": "reported",
        "documents_received": 100,
        "full_cost_usd": 0.005,
    }
    return LedgerRecord(**(values | fields))


# October 2026: three days of calls over two courses, three keys and two backends.
SEEDED = [
    record("a", OCT_1 + timedelta(hours=9)),
    record("b", OCT_1 + timedelta(hours=9, minutes=30), cache_hits=10, cost_usd=0.0015, latency_ms=80.0),
    record("c", OCT_1 + timedelta(days=1, hours=14), course="cooking", tenant="teacher-cooking"),
    record(
        "d",
        OCT_1 + timedelta(days=1, hours=15),
        course="cooking",
        tenant="dean",
        backend="jina:m0",
        latency_ms=300.0,
        cost_usd=0.004,
        full_cost_usd=None,
        documents_received=None,
    ),
    record("e", OCT_1 + timedelta(days=3, hours=8), cache_hits=40, cost_usd=0.0, latency_ms=0.0),
]


@pytest.fixture
def server(tmp_path: Path, index: Pipeline) -> Iterator[LiveServer]:
    settings = settings_for(tmp_path / "data")
    settings = settings.model_copy(update={"cost": CostSettings(budgets=BUDGETS)})
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    for seeded in SEEDED:
        ledger.record(seeded)
    ledger.record(record("now", datetime.now(UTC), tenant="ops", cost_usd=0.25))  # this month's, this day's
    live = LiveServer(create_app(settings, pipeline=index, ledger=ledger))
    yield live
    live.close()
    ledger.close()


def test_series_serves_the_ledger_sums_to_an_admin_key_only(server: LiveServer) -> None:
    with server.client(ADMIN_KEY) as http:
        body = http.get("/v1/usage/series", params={"period": "2026-10", "bucket": "day"}).json()
        assert (body["period"], body["bucket"], body["start"]) == ("2026-10", "day", "2026-10-01T00:00:00Z")
        assert [(r["bucket"], r["course"], r["tenant"], r["calls"]) for r in body["rows"]] == [
            ("2026-10-01", "demo", "teacher-demo", 2),
            ("2026-10-02", "cooking", "dean", 1),
            ("2026-10-02", "cooking", "teacher-cooking", 1),
            ("2026-10-04", "demo", "teacher-demo", 1),
        ]
        first = body["rows"][0]
        assert first["cost_usd"] == pytest.approx(0.0035)
        assert first["savings_usd"] == pytest.approx(0.0065)
        assert (first["documents_received"], first["cache_hits"], first["latency_ms_sum"]) == (200, 10, 200.0)
        hourly = http.get("/v1/usage/series", params={"period": "2026-10-02", "bucket": "hour"}).json()
        assert [r["bucket"] for r in hourly["rows"]] == ["2026-10-02T14:00", "2026-10-02T15:00"]
        too_long = http.get("/v1/usage/series", params={"period": "2026-09-01..2026-10-15", "bucket": "hour"})
        assert too_long.status_code == 422
        assert "at most 31 days" in too_long.json()["error"]
        assert http.get("/v1/usage/series", params={"bucket": "week"}).status_code == 422
        # Budgets: the `*` rule once per course seen this month (only `demo` has calls now), with the
        # spend of each cap's current period.
        now = http.get("/v1/usage/series").json()
        assert now["budgets"] == [
            {"scope": "course", "name": "demo", "period": "month", "soft_usd": 0.01, "hard_usd": 0.02,
             "spent_usd": 0.25},
            {"scope": "tenant", "name": "ops", "period": "day", "soft_usd": None, "hard_usd": 1.0,
             "spent_usd": 0.25},
        ]  # fmt: skip
    with server.client(DEMO_KEY) as http:
        refused = http.get("/v1/usage/series")
        assert refused.status_code == 403
        assert "admin key" in refused.json()["error"]
    with server.client("lr_not-a-key") as http:
        assert http.get("/v1/usage/series").status_code == 401


def test_the_page_and_its_assets_are_public_and_hold_no_data(server: LiveServer) -> None:
    with server.client(None) as http:
        page = http.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "teacher-demo" not in page.text
        for name, media in (("uPlot.iife.min.js", "text/javascript"), ("dashboard.css", "text/css")):
            asset = http.get(f"/dashboard/assets/{name}")
            assert (asset.status_code, asset.headers["content-type"].split(";")[0]) == (200, media)
        assert http.get("/dashboard/assets/missing.js").status_code == 404
        assert http.get("/dashboard/assets/..%2F..%2Fapp.py").status_code == 404
        assert http.get("/v1/usage/series").status_code == 401


# --- the page in a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        reason = "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)"
        if os.environ.get("CI_BROWSER_REQUIRED") == "1":
            pytest.fail(f"CI_BROWSER_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,3000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _load(browser: Any, server: LiveServer, key: str, period: str = "") -> str:
    """Open the page afresh, submit `key` and `period`; the page's final state (`ready` or `error`)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/dashboard")
    browser.execute_script("sessionStorage.clear()")
    browser.get(server.url + "/dashboard")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "period").send_keys(period)
    browser.find_element(By.ID, "load").click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("ready", "error")
    )
    return str(browser.find_element(By.TAG_NAME, "body").get_attribute("data-state"))


def _text(browser: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.ID, element_id).text)


def _table(browser: Any, element_id: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    rows = browser.find_element(By.ID, element_id).find_elements(By.CSS_SELECTOR, "tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def _pixels_of(png: bytes, colour: str) -> int:
    """Pixels within a small distance of `colour` (`#rrggbb`): a series' line, not axes or background."""
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    return int((np.abs(pixels - target).sum(axis=-1) < 40).sum())


def test_the_page_shows_the_seeded_ledger_and_draws_every_chart(browser: Any, server: LiveServer) -> None:
    from selenium.webdriver.common.by import By

    assert _load(browser, server, ADMIN_KEY, "2026-10") == "ready", _text(browser, "status")
    assert _text(browser, "status").startswith("2026-10 (daily, UTC): 5 calls")
    cost = sum(r.cost_usd or 0 for r in SEEDED)
    savings = sum(r.full_cost_usd - (r.cost_usd or 0) for r in SEEDED if r.full_cost_usd is not None)
    documents = sum(r.documents for r in SEEDED)
    hits = sum(r.cache_hits for r in SEEDED)
    assert _text(browser, "total-cost") == f"${cost:.4f}" == "$0.0095"
    assert _text(browser, "total-savings") == f"${savings:.4f}" == "$0.0145"
    assert _text(browser, "total-calls") == "5"
    assert _text(browser, "total-hit-rate") == f"{100 * hits / documents:.1f}%" == "25.0%"
    assert _text(browser, "total-received") == "440"  # 4 x 100 received + 40 (none recorded: scored)
    assert _text(browser, "total-sent") == str(documents - hits) == "150"
    assert _text(browser, "total-tokens") == f"{sum(r.query_tokens + r.document_tokens for r in SEEDED):,}"
    assert _table(browser, "by-course") == [
        ["cooking", "2", "$0.0060", "$0.0030", "0.0%"],
        ["demo", "3", "$0.0035", "$0.0115", "41.7%"],
    ]
    assert [row[:3] for row in _table(browser, "by-key")] == [
        ["dean", "1", "$0.0040"],
        ["teacher-demo", "3", "$0.0035"],
        ["teacher-cooking", "1", "$0.0020"],
    ]
    # Every chart drew its first series (a canvas line in that series' colour), not just empty axes.
    first_series = {
        "chart-spend-course": PALETTE[0],
        "chart-spend-key": PALETTE[0],
        "chart-savings": PALETTE[0],
        "chart-budget": PALETTE[0],  # the burn of the `*` rule's first course, `cooking`
        "chart-cache": PALETTE[2],
        "chart-documents": PALETTE[0],
        "chart-tokens": PALETTE[4],
        "chart-latency": PALETTE[0],
    }
    for chart, colour in first_series.items():
        element = browser.find_element(By.ID, chart)
        assert element.find_elements(By.TAG_NAME, "canvas"), chart
        drawn = _pixels_of(element.screenshot_as_png, colour)
        assert drawn > 100, f"{chart}: {drawn} pixels of {colour}"
    assert (
        _pixels_of(browser.find_element(By.ID, "chart-latency").screenshot_as_png, PALETTE[1]) > 100
    )  # jina
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        browser.save_screenshot(os.environ["DASHBOARD_SCREENSHOT"])
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []  # no script error, no Content-Security-Policy violation


def test_the_page_refuses_a_wrong_or_course_key(browser: Any, server: LiveServer) -> None:
    from selenium.webdriver.common.by import By

    assert _load(browser, server, "lr_wrong") == "error"
    assert _text(browser, "status") == "Refused (401): invalid API key"
    assert browser.find_element(By.ID, "board").is_displayed() is False
    assert browser.execute_script("return sessionStorage.length") == 0  # the bad key is not kept
    assert _load(browser, server, DEMO_KEY) == "error"
    assert _text(browser, "status").startswith("Refused (403): the spend dashboard (it spans courses) needs")
