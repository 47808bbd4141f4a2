"""Benchmark (not part of the test suite): the evaluation harness on XQuAD ru+en with NTREX distractors.

Dataset `xquad:ru+en+ntrex:test`: one bilingual pool (XQuAD paragraphs through leanrank's chunker at the
default 160-token budget, NTREX news as distractors), questions of the test half of the articles only.
Nothing is tuned here; the fusion settings behind `default` were chosen on the tune half by
`bench/retrieval.py`, so these numbers are measured on questions nothing was fitted to.

The reranker is the identity in every configuration (no model can be downloaded here), so quality is
the first stage's; what the tables show is what each configuration would send a paid reranker, priced
with every paid model of leanrank's price table (`leanrank.cost.pricing`).

The encoded pool is kept in `OUT/eval-index` (bench/out is ignored by git): the first run encodes about
190k tokens with the 4-bit e5-small (minutes on 2 cores), later runs reuse it.

    .venv/bin/python bench/eval.py [--shared ../shared] [--out bench/out] [--configs ...] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness import run_configs
from leanrank.cli.eval import priced_models
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.datasets import load_dataset
from leanrank.eval.report import markdown, summarise, write_report
from leanrank.settings import Settings

SPEC = "xquad:ru+en+ntrex:test"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--configs", default="naive,default,hybrid-100,dense-20")
    ap.add_argument("--limit", type=int, default=None, help="only N test questions (quick look)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    dense, sparse = E5SmallEncoder(), Bm25Encoder()
    data = load_dataset(SPEC, count_tokens=dense.token_count, data_root=args.shared / "data")
    if args.limit:
        data = data.limit(args.limit)
    result = run_configs(data, args.configs, dense, sparse, args.out / "eval-index")
    prices = priced_models(Settings())
    report = summarise(result, prices)
    write_report(report, result, args.out / "eval", prices)
    print(markdown(report))
    print(
        f"Runtime {time.perf_counter() - t0:.0f} s on this machine, of which {result.index_s:.0f} s "
        f"indexing ({result.encoded_docs} documents encoded; 0 when the cached pool was reused)."
    )


if __name__ == "__main__":
    main()
