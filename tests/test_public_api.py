import leanrank


def test_public_surface_is_all() -> None:
    public = {name for name in vars(leanrank) if not name.startswith("_")}
    modules = {"errors", "pipeline", "rerank", "settings", "types", "encode", "index", "ingest", "retrieve"}
    assert public - modules == set(leanrank.__all__)
