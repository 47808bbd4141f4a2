import types

import leanrank


def test_public_surface_is_all() -> None:
    """Everything public that is not a subpackage (imported as a side effect) is exported on purpose."""
    public = {name for name in vars(leanrank) if not name.startswith("_")}
    modules = {name for name, value in vars(leanrank).items() if isinstance(value, types.ModuleType)}
    assert public - modules == set(leanrank.__all__)
