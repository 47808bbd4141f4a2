"""Calibrated relevance: a monotone map from one backend's raw score to P(relevant), fitted on labels.

Reranker scores are not probabilities (a cross-encoder's logit, an API's "relevance_score") and their scale
moves between models, so a threshold on raw scores does not carry over. `leanrank calibrate` runs the
pipeline over labelled questions (the evaluation's dataset formats), pairs every hit's score with whether it
is relevant, and fits one of:

- `isotonic`: the best monotone step function in squared error, by pool-adjacent-violators (Ayer et al. 1955;
  Zadrozny & Elkan 2002 for calibration), through `scipy.optimize.isotonic_regression`; applied with linear
  interpolation between the steps' ends and clamped outside them (as scikit-learn's `IsotonicRegression`).
  Needs no shape assumption, but many labels: with few it overfits into steps.
- `platt`: `P = 1 / (1 + exp(-(a·s + b)))` (Platt 1999, "Probabilistic outputs for support vector
  machines"), fitted by maximum likelihood on Platt's smoothed targets (N₊+1)/(N₊+2) and 1/(N₋+2) with
  `scipy.optimize.minimize`; two parameters, so stable on a few hundred labels. The default.

Why scipy and not scikit-learn: both fits are one-dimensional; scipy is already installed with the `eval`
extra that `leanrank calibrate` needs for its datasets, while scikit-learn would add ~40 MB for two
functions. Applying a calibration needs numpy only.

A calibration is dated data, like the price files (`leanrank.cost.prices`): one JSON file per fit, under
`rerank.calibration_dir` (default `<data_dir>/calibration`), naming the backend it belongs to, the date, the
dataset and the settings that shaped the scores (for `identity` the score is the first stage's fused RRF
score, which `retrieve.rrf_k` and the weights change). The newest file for a backend wins.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from leanrank.errors import ConfigError, DependencyError, InputError

Method = Literal["isotonic", "platt"]
CALIBRATION_DIR = "calibration"
ECE_BINS = 10  # equal-width bins of P for the expected calibration error (Naeini et al. 2015)


@dataclass(frozen=True, slots=True)
class Calibration:
    """One fitted map for `backend` (a reranker name as `served_by` reports it).

    `x`, `y`: the isotonic steps' ends (raw score, probability), increasing; `a`, `b`: Platt's parameters.
    `quality` holds the Brier score and the expected calibration error (ECE, 10 bins) of the fit on the
    pairs it was fitted on; `settings` what shaped the scores (retrieve and cascade values).
    """

    backend: str
    method: Method
    fitted: date
    dataset: str
    pairs: int
    positives: int
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 0.0
    b: float = 0.0
    quality: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def probability(self, scores: Sequence[float]) -> list[float]:
        """P(relevant) for each raw score, in [0, 1]; a non-finite score (`UNSCORED`) is 0.0."""
        raw = np.asarray(scores, dtype=np.float64)
        finite = np.isfinite(raw)
        safe = np.where(finite, raw, 0.0)
        if self.method == "platt":
            p = 1.0 / (1.0 + np.exp(-np.clip(self.a * safe + self.b, -500.0, 500.0)))
        else:
            p = np.interp(safe, self.x, self.y)
        return [float(v) for v in np.where(finite, p, 0.0)]

    def write(self, folder: Path) -> Path:
        """Write as `<folder>/<backend slug>-<date>.json`; returns the path."""
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.backend).strip("_")[:80] or "backend"
        path = folder / f"{slug}-{self.fitted.isoformat()}.json"
        body = {**asdict(self), "fitted": self.fitted.isoformat(), "x": list(self.x), "y": list(self.y)}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n", "utf-8")
        tmp.replace(path)  # no half-written file is ever read
        return path

    @classmethod
    def read(cls, path: Path) -> Calibration:
        """Parse and check one file; raises `ConfigError` naming the file and the fault."""
        try:
            body = json.loads(path.read_text("utf-8"))
            method = body["method"]
            if method not in get_args(Method):
                raise ValueError(f"method must be isotonic or platt, got {method!r}")
            cal = cls(
                backend=str(body["backend"]),
                method=method,
                fitted=date.fromisoformat(body["fitted"]),
                dataset=str(body.get("dataset", "")),
                pairs=int(body.get("pairs", 0)),
                positives=int(body.get("positives", 0)),
                x=tuple(float(v) for v in body.get("x", ())),
                y=tuple(float(v) for v in body.get("y", ())),
                a=float(body.get("a", 0.0)),
                b=float(body.get("b", 0.0)),
                quality={str(k): float(v) for k, v in body.get("quality", {}).items()},
                settings=dict(body.get("settings", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"calibration file {path}: {exc}") from exc
        _check(cal, path)
        return cal


def _check(cal: Calibration, path: Path) -> None:
    numbers = [cal.a, cal.b, *cal.x, *cal.y]
    if not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"calibration file {path}: a number that is not finite")
    if cal.method == "isotonic":
        if not cal.x or len(cal.x) != len(cal.y):
            raise ConfigError(f"calibration file {path}: isotonic needs x and y of one length")
        if any(b < a for a, b in zip(cal.x, cal.x[1:], strict=False)) or any(
            b < a for a, b in zip(cal.y, cal.y[1:], strict=False)
        ):
            raise ConfigError(f"calibration file {path}: x and y must be increasing")
        if not all(0.0 <= v <= 1.0 for v in cal.y):
            raise ConfigError(f"calibration file {path}: probabilities outside [0, 1]")


def fit(
    scores: Sequence[float],
    labels: Sequence[bool],
    *,
    backend: str,
    method: Method = "platt",
    dataset: str = "",
    fitted: date | None = None,
    settings: dict[str, Any] | None = None,
) -> Calibration:
    """Fit `method` on (raw score, relevant) pairs; non-finite scores are left out.

    Raises `InputError` when there are no pairs, or only one class (nothing to separate), and
    `DependencyError` without scipy (`pip install leanrank[eval]`).
    """
    if method not in get_args(Method):
        raise InputError(f"calibration method must be isotonic or platt, got {method!r}")
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(labels, dtype=np.float64)
    if s.shape != t.shape:
        raise InputError(f"{len(s)} scores for {len(t)} labels")
    keep = np.isfinite(s)
    s, t = s[keep], t[keep]
    positives = int(t.sum())
    if positives == 0 or positives == len(t):
        raise InputError(
            f"calibration needs relevant and irrelevant hits; got {positives} relevant of {len(t)} scored"
        )
    try:
        from scipy.optimize import isotonic_regression, minimize
    except ImportError as exc:
        raise DependencyError("scipy", "eval") from exc
    base = Calibration(
        backend=backend,
        method=method,
        fitted=fitted or date.today(),
        dataset=dataset,
        pairs=len(t),
        positives=positives,
        settings=settings or {},
    )
    if method == "platt":
        a, b = _platt(s, t, minimize)
        cal = replace(base, a=a, b=b)
    else:
        x, y = _isotonic(s, t, isotonic_regression)
        cal = replace(base, x=x, y=y)
    return replace(cal, quality=calibration_error(cal.probability(s.tolist()), t.astype(bool).tolist()))


def _platt(s: np.ndarray, t: np.ndarray, minimize: Any) -> tuple[float, float]:
    """Platt's maximum likelihood fit on smoothed targets; scores standardised for the optimiser."""
    n_pos = t.sum()
    n_neg = len(t) - n_pos
    target = np.where(t > 0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    mean, std = float(s.mean()), float(s.std()) or 1.0
    z = (s - mean) / std

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        logit = w[0] * z + w[1]
        # log(1 + e^x) written so it never overflows; d/dlogit of the cross-entropy is p - target.
        nll = float(np.sum(np.logaddexp(0.0, logit) - target * logit))
        p = 1.0 / (1.0 + np.exp(-logit))
        g = p - target
        return nll, np.array([float(np.dot(g, z)), float(g.sum())])

    result = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B")
    a_z, b_z = float(result.x[0]), float(result.x[1])
    return a_z / std, b_z - a_z * mean / std


def _isotonic(s: np.ndarray, t: np.ndarray, isotonic_regression: Any) -> tuple[tuple[float, ...], ...]:
    """Pool-adjacent-violators over the distinct scores (each weighted by its count); the steps' ends."""
    xs, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=t) / counts
    ys = np.clip(isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x, 0.0, 1.0)
    keep = np.ones(len(xs), dtype=bool)  # a step's first and last score carry the whole step
    if len(xs) > 2:
        same_prev = np.r_[False, ys[1:] == ys[:-1]]
        same_next = np.r_[ys[:-1] == ys[1:], False]
        keep = ~(same_prev & same_next)
    return tuple(float(v) for v in xs[keep]), tuple(float(v) for v in ys[keep])


def calibration_error(probabilities: Sequence[float], labels: Sequence[bool]) -> dict[str, float]:
    """Brier score (mean squared error of P against the 0/1 label) and the expected calibration error:
    Σ_bins |bin| / n · |mean P − share relevant| over `ECE_BINS` equal-width bins (Naeini et al. 2015)."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(labels, dtype=np.float64)
    if len(p) == 0:
        return {"brier": math.nan, "ece": math.nan}
    bins = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        inside = bins == b
        if inside.any():
            ece += inside.sum() / len(p) * abs(float(p[inside].mean()) - float(t[inside].mean()))
    return {"brier": float(np.mean((p - t) ** 2)), "ece": float(ece)}


def load_calibrations(folder: Path) -> dict[str, Calibration]:
    """The newest calibration per backend found in `folder` (none if it does not exist)."""
    found: dict[str, Calibration] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        cal = Calibration.read(path)
        old = found.get(cal.backend)
        if old is None or cal.fitted >= old.fitted:
            found[cal.backend] = cal
    return found
