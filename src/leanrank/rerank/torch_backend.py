"""torch + transformers runtime for local rerankers (the `torch` extra), and ONNX export of XLM-R ones.

The only module of the rerank package that imports torch or transformers, and only inside functions, so
the rest of leanrank runs without the extra. Pairs arrive tokenised and padded by `local`; this module
only scores them. Weights are fp16 on CUDA by default (as the model cards run them; bf16 on request) and
fp32 on the CPU, where half precision is slow. Attention is PyTorch's fused `scaled_dot_product_attention`
(transformers' "sdpa"), which on a GPU picks a memory-efficient kernel instead of materialising softmax
matrices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from leanrank.errors import BackendError, ConfigError, DependencyError
from leanrank.rerank.local import ONNX_FILE, IdMatrix, Precision, Scores

if TYPE_CHECKING:
    import torch

_Head = Literal["classifier", "causal_lm"]
_Attention = Literal["sdpa", "eager"]
_HALF = {"fp16": "float16", "bf16": "bfloat16"}


class CrossEncoderScorer:
    """The single logit of a sequence-classification cross-encoder (bge-reranker-v2-m3 and kin)."""

    def __init__(self, model: Any, device: torch.device) -> None:
        self._model = model
        self._device = device
        self.device = str(device)

    def __call__(self, input_ids: IdMatrix, attention_mask: IdMatrix) -> Scores:
        logits = _forward(self._model, self._device, input_ids, attention_mask).logits
        return _numpy(logits[:, 0])


class YesNoScorer:
    """Qwen3-Reranker's `compute_logits`: P(yes) from a softmax over the "no" and "yes" logits at the last
    position, which left padding makes the last real token of every row."""

    def __init__(self, model: Any, device: torch.device, yes_id: int, no_id: int) -> None:
        self._model = model
        self._device = device
        self.device = str(device)
        self._ids = [no_id, yes_id]

    def __call__(self, input_ids: IdMatrix, attention_mask: IdMatrix) -> Scores:
        import torch

        # Only the last position's logits: the full vocabulary at every position would be batch × length
        # × 151k floats.
        output = _forward(self._model, self._device, input_ids, attention_mask, logits_to_keep=1)
        no_yes = output.logits[:, -1, self._ids].float()
        return _numpy(torch.softmax(no_yes, dim=-1)[:, 1])


def load_cross_encoder_scorer(
    model_dir: Path, device: str, precision: Precision = "auto"
) -> CrossEncoderScorer:
    model, resolved = _load(model_dir, device, "classifier", precision)
    return CrossEncoderScorer(model, resolved)


def load_yes_no_scorer(
    model_dir: Path, device: str, precision: Precision = "auto", *, yes_id: int, no_id: int
) -> YesNoScorer:
    model, resolved = _load(model_dir, device, "causal_lm", precision)
    return YesNoScorer(model, resolved, yes_id=yes_id, no_id=no_id)


def export_onnx(model_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Convert the XLM-R cross-encoder in `model_dir` to ONNX and return the file written.

    fp32, dynamic batch and sequence axes, inputs `input_ids` and `attention_mask`, output `logits`, written
    by default to `<model_dir>/onnx/model.onnx`, where `runtime="auto"` finds it. The weights go to an
    external data file beside it, as protobuf caps a single file at 2 GiB. Attention is traced from the
    eager (matmul + softmax) implementation: the SDPA one decomposes into the same ops plus NaN guards over
    every attention matrix, which ONNX Runtime then has to run. `onnx_backend.quantize_onnx` turns the
    file into int8.
    """
    model_dir = Path(model_dir)
    target = Path(out_path) if out_path is not None else model_dir / ONNX_FILE
    model, _ = _load(model_dir, "cpu", "classifier", "fp32", attention="eager")
    import torch

    class Logits(torch.nn.Module):
        """The bare logits tensor: exporters name outputs, not fields of a ModelOutput."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            return logits

    # Two rows of eight: a dimension traced at size 1 would be specialised to 1.
    input_ids = torch.arange(16).reshape(2, 8) % int(model.config.vocab_size)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: sequence}
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Logits().eval(),
        (input_ids, torch.ones_like(input_ids)),
        target,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": axes, "attention_mask": axes},
        dynamo=True,
        verbose=False,
    )
    return target


def _load(
    model_dir: Path, device: str, head: _Head, precision: Precision, attention: _Attention = "sdpa"
) -> tuple[Any, torch.device]:
    try:
        import torch  # noqa: F401  (checked here, so that its absence is a DependencyError)
        import transformers
    except ImportError as exc:
        raise DependencyError("torch", "torch") from exc

    resolved = _resolve_device(device)
    dtype = _dtype(precision, resolved)
    auto = (
        transformers.AutoModelForSequenceClassification
        if head == "classifier"
        else transformers.AutoModelForCausalLM
    )
    try:
        # The directory is already resolved, so transformers never needs the hub.
        model: Any = auto.from_pretrained(
            model_dir, dtype=dtype, attn_implementation=attention, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {str(model_dir)!r}: {_first_line(exc)}") from exc
    if head == "classifier" and model.config.num_labels != 1:
        raise ConfigError(
            f"{model_dir}: a classifier with {model.config.num_labels} labels; "
            "a cross-encoder reranker has one logit"
        )
    return model.to(resolved).eval(), resolved


def _dtype(precision: Precision, device: torch.device) -> torch.dtype:
    import torch

    if precision == "int8":
        raise ConfigError("precision='int8' is ONNX Runtime's dynamic quantisation; use runtime='onnx'")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp32":
        return torch.float32
    if device.type != "cuda":
        raise ConfigError(f"precision={precision!r} needs a CUDA device; on the CPU use fp32")
    dtype: torch.dtype = getattr(torch, _HALF[precision])
    return dtype


def _resolve_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return resolved


def _forward(
    model: Any, device: torch.device, input_ids: IdMatrix, attention_mask: IdMatrix, **kwargs: Any
) -> Any:
    import torch

    try:
        with torch.inference_mode():
            return model(
                input_ids=torch.from_numpy(input_ids).to(device),
                attention_mask=torch.from_numpy(attention_mask).to(device),
                **kwargs,
            )
    except RuntimeError as exc:  # CUDA out of memory, device lost, …
        raise BackendError(f"local reranker inference failed on {device}: {_first_line(exc)}") from exc


def _numpy(scores: torch.Tensor) -> Scores:
    return np.asarray(scores.float().cpu().numpy(), dtype=np.float64)


def _first_line(exc: BaseException) -> str:
    return next(iter(str(exc).strip().splitlines()), type(exc).__name__)
