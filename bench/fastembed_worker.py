"""fastembed's `TextCrossEncoder` as a peer of `bench/engine.py`, in a venv of its own
(`make bench-fastembed`).

fastembed pins `huggingface-hub<2.0`, which leanrank's torch and onnx extras are not tested with, so it runs
in its own interpreter: `bench/engine.py` starts this script there and, each round, writes one JSON line
of requests (`[[query, [document, ...]], ...]`) to its stdin and reads one line of scores (`[[logit, ...],
...]`) back, timing the round trip while it waits idle. Only fastembed, its ONNX Runtime and the standard
library are imported here.

    bench/out/fastembed-venv/bin/python bench/fastembed_worker.py MODEL_FOLDER MODEL_FILE THREADS MAX_LENGTH

MODEL_FOLDER holds the tokenizer files and MODEL_FILE (leanrank's ONNX export, with its external data); the
model is registered as a custom cross-encoder and loaded from there (`specific_model_path`): nothing is
downloaded.
"""

from __future__ import annotations

import json
import sys

from fastembed.common.model_description import ModelSource
from fastembed.rerank.cross_encoder import TextCrossEncoder

NAME = "leanrank-bench/xlmr-cross-encoder"


def main(folder: str, model_file: str, threads: int, max_length: int) -> None:
    TextCrossEncoder.add_custom_model(NAME, sources=ModelSource(hf=NAME), model_file=model_file)
    encoder = TextCrossEncoder(NAME, specific_model_path=folder, threads=threads)
    encoder.model.tokenizer.enable_truncation(max_length=max_length)  # type: ignore[attr-defined]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        requests = json.loads(line)
        scores = [[float(s) for s in encoder.rerank(q, docs, batch_size=len(docs))] for q, docs in requests]
        print(json.dumps(scores), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
