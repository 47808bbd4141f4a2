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
    weights: Literal["auto", "uint8", "int8"] = "auto",
    per_channel: bool = True,
    reduce_range: bool = False,
) -> Path:
    """Write `<model_dir>/onnx/model_int8.onnx`, the dynamic 8-bit quantisation of `onnx/model.onnx`, and
    return its path; `local_reranker(..., precision="int8")` serves it.

    ONNX Runtime's `quantize_dynamic`: the weights of every MatMul and the embedding tables are stored in
    8 bits, activations are quantised batch by batch at run time, so no calibration data is needed (and a
    pair's score moves a little with the pairs that share its batch). The file is about 4× smaller and
    runs faster on CPUs (bench/engine.py measures how much, and `leanrank.rerank.quality` what it costs in
    ranking: check the real model with it before serving).

    `weights`: ONNX Runtime multiplies u8 activations by s8 ("int8") weights with one VNNI instruction
    (AVX512-VNNI or AVX-VNNI) that accumulates exactly; without VNNI it uses an AVX2 instruction that
    saturates, which on such a CPU cut the tiny bench model's Kendall tau against fp32 from 0.93 to 0.58.
    u8 ("uint8") weights never saturate but take a slower path. "auto" picks int8 where this CPU has VNNI
    and uint8 elsewhere, so quantise on the kind of CPU that will serve the file (or say which). On the
    bench's 2-core AVX512-VNNI CPU, int8 weights ran the 12-layer model 1.6× faster than uint8 ones.

    `per_channel` (a scale per weight column rather than one per matrix) halved the mean score
    difference from fp32 there (0.075 → 0.034 on XQuAD pairs) at the same speed. `reduce_range` (7-bit
    weights, the other remedy for saturation) lost more ranking than it saved (tau 0.67 on the tiny model).
    Leaving the classifier head in fp32 did not move the max or mean score difference (to 3 digits), so it
    is quantised with the rest.
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
        weight_type=QuantType.QInt8 if _signed_weights(weights) else QuantType.QUInt8,
        use_external_data_format=True,
    )
    return target


def _signed_weights(weights: Literal["auto", "uint8", "int8"]) -> bool:
    return weights == "int8" or (weights == "auto" and cpu_has_vnni())


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies u8 × s8 exactly (AVX512-VNNI or AVX-VNNI), from Linux's /proc/cpuinfo;
    False where that cannot be read (another OS), which only costs speed."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return False
    return not {"avx512_vnni", "avx_vnni"}.isdisjoint(flags.split())


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
