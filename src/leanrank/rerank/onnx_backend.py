"""ONNX Runtime for local XLM-R cross-encoders (the `onnx` extra): serving without torch.

The only module of the rerank package that imports onnxruntime, and only inside functions. Pairs arrive
tokenised and padded by `local`; the graph is the one `torch_backend.export_onnx` writes, or any export
with the same inputs (`input_ids`, optionally `attention_mask`) and one logit per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from leanrank.errors import BackendError, ConfigError, DependencyError
from leanrank.rerank.local import IdMatrix, Scores

_INPUTS = frozenset({"input_ids", "attention_mask"})
_CUDA = "CUDAExecutionProvider"


class OnnxScorer:
    """The single logit per row of an ONNX cross-encoder session."""

    def __init__(self, session: Any, inputs: frozenset[str], output: str) -> None:
        self._session = session
        self._inputs = inputs
        self._output = output

    def __call__(self, input_ids: IdMatrix, attention_mask: IdMatrix) -> Scores:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        try:
            (logits,) = self._session.run(
                [self._output], {k: v for k, v in feeds.items() if k in self._inputs}
            )
        except Exception as exc:  # ONNX Runtime's C++ errors are bare Exception subclasses
            raise BackendError(f"ONNX Runtime inference failed: {_first_line(exc)}") from exc
        return np.asarray(logits[:, 0], dtype=np.float64)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_onnx_scorer(path: Path, device: str, intra_op_num_threads: int | None = None) -> OnnxScorer:
    """A session on the CPU, or on CUDA where `device` asks for it (`auto`: where the provider exists).

    `intra_op_num_threads` None leaves ONNX Runtime's default, one thread per physical core.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyError("onnxruntime", "onnx") from exc

    options = ort.SessionOptions()
    if intra_op_num_threads is not None:
        options.intra_op_num_threads = intra_op_num_threads
    providers = _providers(ort.get_available_providers(), device)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ONNX Runtime's C++ errors are bare Exception subclasses
        raise ConfigError(f"cannot load {path}: {_first_line(exc)}") from exc
    inputs = frozenset(i.name for i in session.get_inputs())
    if "input_ids" not in inputs or not inputs <= _INPUTS:
        raise ConfigError(
            f"{path} takes inputs {sorted(inputs)}; a cross-encoder here takes input_ids and attention_mask"
        )
    output = session.get_outputs()[0]
    width = output.shape[-1] if output.shape else None
    if width != 1 and isinstance(width, int):
        raise ConfigError(f"{path} outputs {width} logits per pair; a cross-encoder reranker has one")
    return OnnxScorer(session, inputs, output.name)


def _providers(available: list[str], device: str) -> list[str | tuple[str, dict[str, str]]]:
    if device == "cpu" or (device == "auto" and _CUDA not in available):
        return ["CPUExecutionProvider"]
    if _CUDA not in available:
        raise ConfigError(
            f"device {device!r} requested but onnxruntime has no {_CUDA}; install onnxruntime-gpu"
        )
    return [(_CUDA, {"device_id": device.partition(":")[2] or "0"}), "CPUExecutionProvider"]


def _first_line(exc: BaseException) -> str:
    return next(iter(str(exc).strip().splitlines()), type(exc).__name__)
