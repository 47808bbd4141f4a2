"""ONNX Runtime for local XLM-R cross-encoders (the `onnx` extra): serving without torch.

The only module of the rerank package that imports onnxruntime, and only inside functions. Pairs arrive
tokenised and padded by `local`; the graph is the one `torch_backend.export_onnx` writes, or any export
with the same inputs (`input_ids`, optionally `attention_mask`) and one logit per row, and
`quantize_onnx` derives its int8 twin from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from leanrank.errors import BackendError, ConfigError, DependencyError
from leanrank.rerank.local import ONNX_FILE, ONNX_INT8_FILE, IdMatrix, Scores

_INPUTS = frozenset({"input_ids", "attention_mask"})
_CUDA = "CUDAExecutionProvider"


class OnnxScorer:
    """The single logit per row of an ONNX cross-encoder session."""

    def __init__(self, session: Any, inputs: frozenset[str], output: str) -> None:
        self._session = session
        self._inputs = inputs
        self._output = output
        cuda = session.get_provider_options().get(_CUDA)  # absent where the session fell back to the CPU
        self.device = "cpu" if cuda is None else f"cuda:{cuda.get('device_id', '0')}"

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


def quantize_onnx(
    model_dir: str | Path,
    *,
    weights: Literal["uint8", "int8"] = "uint8",
    per_channel: bool = False,
    reduce_range: bool = False,
) -> Path:
    """Write `<model_dir>/onnx/model_int8.onnx`, the dynamic 8-bit quantisation of `onnx/model.onnx`, and
    return its path; `local_reranker(..., precision="int8")` serves it.

    ONNX Runtime's `quantize_dynamic`: the weights of every MatMul and the embedding tables are stored in
    8 bits, activations are quantised batch by batch at run time, so no calibration data is needed. The
    file is about 4× smaller and runs faster on CPUs (bench/engine.py measures how much, and
    `leanrank.rerank.quality` what it costs in ranking: check the real model with it before serving).

    Weights are unsigned by default: with signed ones ONNX Runtime multiplies u8 × s8 with an AVX2
    instruction that saturates on CPUs without VNNI, which on such a CPU cut the tiny bench model's
    Kendall tau against fp32 from 0.93 to 0.58, while the 12-layer one ranked alike either way (0.82 vs
    0.87, within the noise of 12 queries). `reduce_range` (7-bit weights, the other remedy) lost more than
    it saved there (0.67); `per_channel` (a scale per weight column) did not help.
    """
    source = Path(model_dir) / ONNX_FILE
    target = Path(model_dir) / ONNX_INT8_FILE
    if not source.is_file():
        raise ConfigError(f"{source} does not exist: export it first with torch_backend.export_onnx")
    try:
        import onnx
    except ImportError as exc:
        raise DependencyError("onnx", "torch") from exc
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise DependencyError("onnxruntime", "onnx") from exc

    model = onnx.load(source)
    # The exporter's recorded intermediate shapes disagree with ONNX's own re-inference, which
    # quantize_dynamic runs and then refuses ("Inferred shape and existing shape differ"); it infers
    # them afresh without these.
    del model.graph.value_info[:]
    # The weights go to an external file, as in the export; onnx appends to one that exists.
    for stale in (target, target.with_name(target.name + ".data")):
        stale.unlink(missing_ok=True)
    quantize_dynamic(
        model,
        target,
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=QuantType.QUInt8 if weights == "uint8" else QuantType.QInt8,
        use_external_data_format=True,
    )
    return target


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
