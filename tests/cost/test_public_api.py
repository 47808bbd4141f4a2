from __future__ import annotations

import subprocess
import sys
import types

import leanrank.cost


def test_public_surface_is_all() -> None:
    public = {
        name
        for name, value in vars(leanrank.cost).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(leanrank.cost.__all__)


def test_only_the_plots_module_loads_matplotlib() -> None:
    code = (
        "import sys, leanrank.cost, leanrank.cli.costs; assert 'matplotlib' not in sys.modules;"
        "import leanrank.cost.plots; assert 'matplotlib' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
