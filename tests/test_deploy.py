"""deploy/: the compose file's settings are real settings, every service has a health check, the compose
file passes a config check, and the image's health check command works against a real server.

No container engine runs here, so images are neither built nor started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from leanrank.serve import create_app, new_key
from leanrank.settings import Settings
from tests.serve.conftest import settings_for
from tests.serve.live import LiveServer

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
_, ENTRY = new_key("ops", "admin")
# What the README tells an operator to export before `docker compose up`.
OPERATOR_ENV = {
    "QDRANT_API_KEY": "q" * 64,
    "POSTGRES_PASSWORD": "p" * 32,
    "LEANRANK_API_KEYS": json.dumps([ENTRY]),
}
_REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8")))


def test_every_leanrank_variable_of_the_service_is_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no leanrank.toml from elsewhere
    for name in [n for n in os.environ if n.upper().startswith("LEANRANK_")]:
        monkeypatch.delenv(name)
    environment = compose()["services"]["leanrank"]["environment"]
    for name, value in environment.items():
        monkeypatch.setenv(name, _REQUIRED.sub(lambda m: OPERATOR_ENV[m.group(1)], str(value)))
    settings = Settings()  # an unknown LEANRANK_* name or a bad value raises here
    assert settings.rerank.cache == "redis://redis:6379/0"
    assert settings.serve.api_keys == [ENTRY]
    assert settings.store.url == "http://qdrant:6333"


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies() -> None:
    services = compose()["services"]
    assert {name for name, spec in services.items() if "healthcheck" not in spec} == set()
    assert {c["condition"] for c in services["leanrank"]["depends_on"].values()} == {"service_healthy"}


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")  # Debian's docker-compose 1.29 validates the same file
    return [legacy] if legacy else None


def _config(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    file = str(DEPLOY / "compose.yaml")
    return subprocess.run(
        [*command, "-f", file, "config", "-q"], capture_output=True, text=True, env=env, check=False
    )


def test_compose_config_check() -> None:
    command = _compose_command()
    if command is None:
        if os.environ.get("CI_COMPOSE_REQUIRED"):  # .ci/run installs it: there a skip would hide the check
            pytest.fail("CI_COMPOSE_REQUIRED is set, but there is no `docker compose` or `docker-compose`")
        pytest.skip("no `docker compose` or `docker-compose` here (Debian: apt-get install docker-compose)")
    env = {**os.environ, **OPERATOR_ENV}
    r = _config(command, env)
    assert (r.returncode, r.stderr) == (0, "")
    r = _config(command, {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"})
    assert r.returncode != 0
    assert "set POSTGRES_PASSWORD" in r.stderr


def _healthcheck(dockerfile: str) -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK (continuation lines joined)."""
    joined = dockerfile.replace("\\\n", " ")
    line = next(text for text in joined.splitlines() if text.startswith("HEALTHCHECK"))
    return list(json.loads(line[line.index("CMD ") + 4 :]))


def test_the_images_health_check_passes_against_a_serving_process(tmp_path: Path) -> None:
    command = _healthcheck((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    assert command == compose()["services"]["leanrank"]["healthcheck"]["test"][1:]
    assert command[0] == "python"
    server = LiveServer(create_app(settings_for(tmp_path)))
    try:
        port = server.url.rsplit(":", 1)[1]
        probe = [sys.executable, *command[1:-1], command[-1].replace(":8000/", f":{port}/")]
        assert subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    finally:
        server.close()
    assert subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode != 0
