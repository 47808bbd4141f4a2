"""`leanrank serve` with settings that cannot work: the error's one line in the log, not a stack trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.serve.conftest import ADMIN_ENTRY


def test_a_start_up_refused_by_leanrank_logs_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LEANRANK_DATA_DIR": str(tmp_path),
        "LEANRANK_SERVE__API_KEYS": json.dumps([ADMIN_ENTRY]),
        "LEANRANK_SPARSE": "bge-m3",  # learned weights asked of the default e5 encoder
    }
    done = subprocess.run(
        [sys.executable, "-m", "leanrank.cli", "serve", "--port", "0"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1
    assert "sparse = 'bge-m3' takes the lexical weights of the bge-m3 model itself" in errors[0]
