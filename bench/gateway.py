"""What a rerank gateway adds to a call: p50/p95 latency through `leanrank serve` and through LiteLLM's proxy,
against calling the backend directly, at 1 and 16 concurrent clients, in one run.

Every server is its own process, as deployed, so none shares the client's interpreter lock: the backend is
the test suite's Cohere-format fake (`python -m tests.rerank.servers cohere --keep-alive`; it answers at once,
so every millisecond measured past it is a gateway's, and keeps connections open as providers' APIs do),
`leanrank serve` runs with a SQLite ledger on disk (synced at every record) and LiteLLM's proxy (`make
bench-litellm` installs it in its own venv under bench/out) routes `/v2/rerank` to the same backend. Paths:

- direct: the client posts to the backend itself;
- leanrank: `/v2/rerank` through `leanrank serve`: key check, limits, budget hold, the backend call through
  its pooled adapter, pricing, and the ledger record durable before the answer leaves;
- leanrank, ledger on tmpfs: the same with the ledger under /dev/shm (what syncing to disk costs);
- leanrank, cache hit: the same query again through the score cache (nothing sent to the backend);
- litellm proxy: LiteLLM's `/v2/rerank` (key check, routing; no database: it keeps no spend records
  without its PostgreSQL and Prisma set-up, so it does less per request than leanrank here);
- bare pass-through, and the same + synced SQLite row: the floor under any Python gateway on this machine
  (`bench/passthrough.py`: uvicorn as leanrank runs it, one kept aiohttp session, nothing else; then one
  durable row per request before the answer, as leanrank promises).

A round sends, to each path in turn (the order rotated every round, so the machine's load drifts hit all
paths alike), one request per client at once; each request is timed on its own. "Added" is a path's
percentile minus the direct path's at the same concurrency.

    .venv/bin/python -m bench.gateway [--rounds 150] [--docs 20] [--clients 1,16] [--profile]

`--profile` also runs the plain leanrank server under pyinstrument (`make bench-deps`) and writes its
profile (text) to bench/out/gateway-profile.txt.

    .venv/bin/python -m bench.gateway [--rounds 300] [--docs 20] [--out bench/out]

`--savings xquad|course` measures instead what the gateway's cascade saves a client that posts its dense
top-100 (`bench/savings.py`): answer survival and tokens forwarded per policy, and the cascade's added p95
latency side by side with the policy off, on `--split test` (the presets were chosen with `--tune` on
`--split tune`, an offline grid over the same plans).

    .venv/bin/python -m bench.gateway --savings xquad|course [--split test|tune] [--tune] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from bench import savings
from tests.rerank.servers import API_KEY, MODEL

from leanrank.serve import new_key

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / "bench" / "out" / "litellm-venv" / "bin" / "litellm"
LITELLM_KEY = "sk-bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    family, total = {pid}, 0.0
    for _ in range(4):  # children, grandchildren, ...
        family |= {p for p, (parent, _) in stats.items() if parent in family}
    for member in family:
        total += stats.get(member, (0, 0.0))[1]
    return total


def fsync_ms(folder: Path, n: int = 100) -> tuple[float, float]:
    """p50 and p95 of one 4 KiB append + fsync in `folder`: the floor under any durable commit there."""
    path = folder / "fsync-probe"
    times = []
    with path.open("ab") as f:
        for _ in range(n):
            f.write(b"x" * 4096)
            f.flush()
            t0 = time.perf_counter()
            os.fsync(f.fileno())
            times.append((time.perf_counter() - t0) * 1000)
    path.unlink()
    return percentile(times, 0.5), percentile(times, 0.95)


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[int]:
    """A server process (its pid) for the block's duration, stopped with SIGINT (a clean exit flushes
    profiles)."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(url: str, token: str, body: dict[str, Any], log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.post(
                f"{url}/v2/rerank", json=body, headers={"authorization": f"Bearer {token}"}, timeout=10
            )
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{url} did not answer in {timeout_s:.0f} s; see {log}")


def leanrank_server(
    stack: ExitStack, data_dir: Path, backend_url: str, entry: str, log: Path, *, cache: bool, profile: bool
) -> tuple[str, int]:
    port = free_port()
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "LEANRANK_DATA_DIR": str(data_dir),
        "LEANRANK_RERANK__BACKEND": f"cohere:{MODEL}",
        "LEANRANK_RERANK__CACHE": "sqlite" if cache else "off",
        "LEANRANK_COHERE_BASE_URL": backend_url,
        "LEANRANK_COHERE_API_KEY": API_KEY,
        "LEANRANK_SERVE__API_KEYS": json.dumps([entry]),
    }
    serve = ["-c", "from leanrank.cli.app import main; main()", "serve", "--port", str(port)]
    serve += ["--host", "127.0.0.1", "--log-level", "warning"]
    if profile:
        report = ROOT / "bench" / "out" / "gateway-profile.txt"
        argv = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(report), *serve]
    else:
        argv = [sys.executable, *serve]
    return f"http://127.0.0.1:{port}", stack.enter_context(process(argv, env, log))


def litellm_server(stack: ExitStack, backend_url: str, folder: Path) -> tuple[str, int]:
    port = free_port()
    config = folder / "litellm.yaml"
    config.write_text(
        f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: cohere/{MODEL}\n"
        f"      api_base: {backend_url}\n      api_key: {API_KEY}\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\nlitellm_settings:\n  telemetry: false\n",
        encoding="utf-8",
    )
    # No network here: the model price map is read from the installed package, not fetched.
    env = os.environ | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    argv = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    pid = stack.enter_context(process([*argv, "--num_workers", "1"], env, folder / "litellm.log"))
    return f"http://127.0.0.1:{port}", pid


async def burst(client: httpx.AsyncClient, url: str, token: str, body: dict[str, Any], n: int) -> list[float]:
    """Milliseconds of `n` requests sent at once, each answer checked."""

    async def one() -> float:
        t0 = time.perf_counter()
        response = await client.post(
            f"{url}/v2/rerank", json=body, headers={"authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        return (time.perf_counter() - t0) * 1000

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def measure(
    targets: dict[str, tuple[str, str]], body: dict[str, Any], clients: int, rounds: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in targets}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for url, token in targets.values():  # warm-up: connections, first ledger writes, the cache
            for _ in range(5):
                await burst(client, url, token, body, clients)
        names = list(targets)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name] += await burst(client, *targets[name], body, clients)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--docs", type=int, default=20, help="Documents per request.")
    parser.add_argument("--clients", default="1,16", help="Concurrent clients, comma-separated levels.")
    parser.add_argument("--profile", action="store_true", help="Profile the leanrank server (pyinstrument).")
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
    levels = [int(c) for c in args.clients.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    key, entry = new_key("bench", "admin")
    docs = [f"Фрагмент {i}: цикл for перебирает элементы, шаг {i}." for i in range(args.docs)]
    body: dict[str, Any] = {"model": MODEL, "query": "Как работает цикл for?", "documents": docs}
    tmp = Path(tempfile.mkdtemp(prefix="leanrank-bench-", dir=args.out))
    shm = Path("/dev/shm")
    fast = Path(tempfile.mkdtemp(prefix="leanrank-bench-", dir=shm)) if shm.is_dir() else None
    results: dict[int, dict[str, list[float]]] = {}
    cpu: dict[int, dict[str, float]] = {}
    floor = fsync_ms(tmp)
    try:
        with ExitStack() as stack:
            backend_port = free_port()
            backend = f"http://127.0.0.1:{backend_port}"
            env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
            argv = [sys.executable, "-m", "tests.rerank.servers", "cohere", str(backend_port), "--keep-alive"]
            pids = {"direct": stack.enter_context(process(argv, env, tmp / "backend.log"))}
            targets = {"direct": (backend, API_KEY)}
            logs = {"direct": tmp / "backend.log"}
            variants = {"leanrank": (tmp / "plain", False), "leanrank, cache hit": (tmp / "cached", True)}
            if fast is not None:
                variants["leanrank, ledger on tmpfs"] = (fast, False)
            for name, (folder, cache) in variants.items():
                log = tmp / f"{name.replace(', ', '-').replace(' ', '-')}.log"
                profile = args.profile and name == "leanrank"
                url, pids[name] = leanrank_server(
                    stack, folder, backend, entry, log, cache=cache, profile=profile
                )
                targets[name], logs[name] = (url, key), log
            for name, extra in (("bare pass-through", []), ("bare pass-through + synced row", ["--ledger"])):
                port, log = free_port(), tmp / f"{name.replace(' ', '-').replace('+', 'and')}.log"
                argv = [sys.executable, "-m", "bench.passthrough", backend, str(port)]
                if extra:
                    argv += [*extra, str(tmp / "passthrough.sqlite")]
                pids[name] = stack.enter_context(process(argv, env, log))
                targets[name], logs[name] = (f"http://127.0.0.1:{port}", API_KEY), log
            if LITELLM.exists():
                url, pids["litellm proxy"] = litellm_server(stack, backend, tmp)
                targets["litellm proxy"], logs["litellm proxy"] = (url, LITELLM_KEY), tmp / "litellm.log"
            else:
                print(f"LiteLLM not installed ({LITELLM}); `make bench-litellm` installs it", file=sys.stderr)
            for name, (url, token) in targets.items():
                wait_ready(url, token, body, logs[name])
            for clients in levels:
                before = {name: cpu_s(pid) for name, pid in pids.items()}
                results[clients] = asyncio.run(measure(targets, body, clients, args.rounds))
                sent = (args.rounds + 5) * clients  # the warm-up's requests too
                cpu[clients] = {name: (cpu_s(pid) - before[name]) * 1000 / sent for name, pid in pids.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if fast is not None:
            shutil.rmtree(fast, ignore_errors=True)

    load = os.getloadavg()[0]
    print(
        f"{args.rounds} rounds, {args.docs} documents per request, loopback; load average {load:.1f}; "
        f"fsync of 4 KiB where the ledger is: p50 {floor[0]:.2f} ms, p95 {floor[1]:.2f} ms\n"
    )
    report: dict[str, Any] = {
        "rounds": args.rounds,
        "docs": args.docs,
        "load_avg_1m": load,
        "fsync_ms": {"p50": floor[0], "p95": floor[1]},
        "levels": {},
    }
    print("| clients | path | p50 ms | p95 ms | added p50 ms | added p95 ms | server CPU ms/request |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for clients, times in results.items():
        base = {q: percentile(times["direct"], q) for q in (0.5, 0.95)}
        rows = []
        for name, values in times.items():
            p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
            rows.append(
                {"path": name, "p50_ms": p50, "p95_ms": p95, "added_p50_ms": p50 - base[0.5]}
                | {"added_p95_ms": p95 - base[0.95], "requests": len(values)}
                | {"cpu_ms_per_request": cpu[clients][name]}
            )
            added = f"{p50 - base[0.5]:+.2f} | {p95 - base[0.95]:+.2f}"
            print(f"| {clients} | {name} | {p50:.2f} | {p95:.2f} | {added} | {cpu[clients][name]:.2f} |")
        report["levels"][str(clients)] = rows
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
