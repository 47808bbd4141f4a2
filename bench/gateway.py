"""What the rerank gateway adds to a call: p50/p95 latency through `leanrank serve` vs the backend directly.

One run, one process, loopback only. The backend is the Cohere-format fake of the test suite (it answers at
once, so every millisecond measured is overhead). Each round times one request per path, in turn, so
drifts of the machine's load hit every path alike:

- direct: the client posts to the fake backend itself;
- gateway: the client posts to leanrank (`/v2/rerank`), which checks the key and limits, calls the
  backend through its adapter, prices the call and commits a ledger record (SQLite, synced to disk);
- gateway, pooled adapter: the same, with the adapter's HTTP connections pooled across calls
  (the shipped adapter opens a client per call, sharing one TLS context per process);
- gateway, pooled adapter, ledger on tmpfs: the same without the ledger's sync to disk (where /dev/shm is);
- gateway, cache hit: the same query again through a score cache in front of the backend (nothing sent).

    .venv/bin/python -m bench.gateway [--rounds 300] [--docs 20] [--out bench/out]

`--savings xquad|course` measures instead what the gateway's cascade saves a client that posts its dense
top-100 (`bench/savings.py`): answer survival and tokens forwarded per policy, and the cascade's added p95
latency side by side with the policy off, on `--split test` (the presets were chosen with `--tune` on
`--split tune`, an offline grid over the same plans).

    .venv/bin/python -m bench.gateway --savings xquad|course [--split test|tune] [--tune] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench import savings
from tests.rerank.servers import API_KEY, MODEL, FakeProvider, adapter
from tests.serve.live import LiveServer, PooledTransport

from leanrank.rerank.base import Reranker
from leanrank.rerank.cache import CachedReranker, SqliteScoreCache
from leanrank.serve import create_app, new_key
from leanrank.settings import ServeSettings, Settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def gateway(reranker: Reranker, data_dir: Path, entry: str) -> LiveServer:
    settings = Settings(data_dir=data_dir, serve=ServeSettings(api_keys=[entry]))
    return LiveServer(create_app(settings, reranker=reranker))


def timed(client: httpx.Client, url: str, token: str, body: dict[str, Any]) -> float:
    """Milliseconds for one rerank request, answer checked."""
    t0 = time.perf_counter()
    client.post(
        f"{url}/v2/rerank", json=body, headers={"authorization": f"Bearer {token}"}
    ).raise_for_status()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--docs", type=int, default=20, help="Documents per request.")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--savings", choices=["xquad", "course"], help="The cascade-savings benchmark.")
    parser.add_argument("--split", choices=["tune", "test"], default="test")
    parser.add_argument("--tune", action="store_true", help="With --savings: the offline grid.")
    parser.add_argument("--limit", type=int, help="With --savings: the first N questions of the split.")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    args = parser.parse_args()
    if args.savings:
        savings_mode(args)
        return

    key, entry = new_key("bench", "admin")
    docs = [f"Фрагмент {i}: цикл for перебирает элементы, шаг {i}." for i in range(args.docs)]
    body: dict[str, Any] = {"model": MODEL, "query": "Как работает цикл for?", "documents": docs}
    fake = FakeProvider("cohere")
    tmp = Path(tempfile.mkdtemp(prefix="leanrank-bench-"))
    cached = CachedReranker(adapter(fake), SqliteScoreCache(tmp / "cache.sqlite"))
    servers = {
        "gateway": gateway(adapter(fake), tmp / "plain", entry),
        "gateway, pooled adapter": gateway(adapter(fake, transport=PooledTransport()), tmp / "pooled", entry),
        "gateway, cache hit": gateway(cached, tmp / "cached", entry),
    }
    shm = Path("/dev/shm")
    fast = Path(tempfile.mkdtemp(prefix="leanrank-bench-", dir=shm if shm.is_dir() else None))
    if shm.is_dir():
        pooled = adapter(fake, transport=PooledTransport())
        servers["gateway, pooled adapter, ledger on tmpfs"] = gateway(pooled, fast, entry)
    targets = {"direct": (fake.url, API_KEY)} | {name: (s.url, key) for name, s in servers.items()}
    times: dict[str, list[float]] = {name: [] for name in targets}
    try:
        with httpx.Client(timeout=30) as client:
            for url, token in targets.values():  # warm-up: connections, the first ledger write, the cache
                for _ in range(10):
                    timed(client, url, token, body)
            for _ in range(args.rounds):
                for name, (url, token) in targets.items():
                    times[name].append(timed(client, url, token, body))
    finally:
        for server in servers.values():
            server.close()
        fake.close()
        for folder in (tmp, fast):
            shutil.rmtree(folder, ignore_errors=True)

    base = {q: percentile(times["direct"], q) for q in (0.5, 0.95)}
    rows = [
        {
            "path": name,
            "p50_ms": percentile(values, 0.5),
            "p95_ms": percentile(values, 0.95),
            "added_p50_ms": percentile(values, 0.5) - base[0.5],
            "added_p95_ms": percentile(values, 0.95) - base[0.95],
            "mean_ms": statistics.fmean(values),
        }
        for name, values in times.items()
    ]
    print(f"{args.rounds} rounds, {args.docs} documents per request, loopback\n")
    print("| path | p50 ms | p95 ms | added p50 ms | added p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{r[k]:.2f}" for k in ("p50_ms", "p95_ms")] + [
            f"{r[k]:+.2f}" for k in ("added_p50_ms", "added_p95_ms")
        ]
        print(f"| {r['path']} | {' | '.join(cells)} |")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"rounds": args.rounds, "docs": args.docs, "rows": rows}
    (args.out / "gateway.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


def savings_mode(args: argparse.Namespace) -> None:
    """`--savings`: one table (see `bench/savings.py`), JSON under `--out`."""
    t0 = time.perf_counter()
    result = savings.main(args.savings, args.split, args.shared, args.out, tune=args.tune, limit=args.limit)
    print(savings.markdown(result))
    cold = result.get("cold_added_p95_ms")
    if cold is not None:
        print(f"\nadded p95 with nothing remembered (every document analysed afresh): {cold:+.1f} ms")
    print(f"{result['dataset']} {args.split}: {time.perf_counter() - t0:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"savings-{args.savings}-{args.split}{'-grid' if args.tune else ''}.json"
    (args.out / name).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
