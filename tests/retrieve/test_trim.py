from leanrank.index.base import Candidate
from leanrank.retrieve.hybrid import trim
from leanrank.types import Chunk


def cand(cid: str, text: str, source: str, score: float) -> Candidate:
    chunk = Chunk("c", source, 0, text, 0, len(text), (), "en", cid, "f", 1)
    return Candidate(cid, chunk, score, None, None, None, None)


def test_trim_drops_normalised_duplicates_and_caps_sources() -> None:
    cands = [
        cand("1", "Loops repeat code.", "a.md", 0.9),
        cand("2", "loops   REPEAT code.", "b.md", 0.8),
        cand("3", "Functions return values.", "a.md", 0.7),
        cand("4", "Modules group code.", "a.md", 0.6),
        cand("5", "Files store data.", "c.md", 0.5),
    ]
    kept = trim(cands, depth=10, dedup=True, max_per_source=2)
    assert [c.chunk_id for c in kept] == ["1", "3", "5"]
    assert [c.chunk_id for c in trim(cands, depth=2, dedup=False, max_per_source=0)] == ["1", "2"]
