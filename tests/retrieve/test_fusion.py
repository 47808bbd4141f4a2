import pytest

from leanrank.retrieve.fusion import rrf


def test_rrf_scores_are_the_formula_with_zero_based_ranks() -> None:
    fused = dict(rrf([["a", "b", "c"], ["c", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 60 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 61)
    assert fused["c"] == pytest.approx(1 / 62 + 1 / 60)


def test_rrf_order_and_weights() -> None:
    assert [d for d, _ in rrf([["a", "b"], ["b", "a"]], k=1, weights=[3.0, 1.0])] == ["a", "b"]
    fused = dict(rrf([["a", "c"], ["b"]], k=2, weights=[0.5, 1.0]))
    # Qdrant stretches a weighted list's 1-based rank: 1 / ((rank + 1) / w + k - 1).
    assert fused == {
        "a": pytest.approx(1 / (1 / 0.5 + 2 - 1)),
        "c": pytest.approx(1 / (2 / 0.5 + 2 - 1)),
        "b": pytest.approx(1 / (1 / 1.0 + 2 - 1)),
    }
    assert dict(rrf([["a"], ["b"]], k=2, weights=[1.0, 0.0]))["b"] == 0.0


def test_rrf_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        rrf([["a"]], k=0)
    with pytest.raises(ValueError, match="one weight per ranking"):
        rrf([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError, match="negative"):
        rrf([["a"]], weights=[-1.0])
