"""The two Dockerfiles (not buildable here): what they copy exists, they run as
non-root, and their image names are the ones the chart deploys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["singleuser", "hub"])
def test_dockerfile_is_consistent_with_the_repository_and_chart(name: str) -> None:
    text = (REPO / "docker" / f"Dockerfile.{name}").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (REPO / src).exists(), f"COPY source {src} is missing"
    assert re.search(r"^USER 1000:1000$", text, re.MULTILINE), "images run as a non-root user"
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for used in re.findall(r'/opt/zasperhub\[([a-z0-9,]+)\]', text):
        assert set(used.split(",")) <= extras, used
    values = yaml.safe_load((REPO / "helm" / "zasperhub" / "values.yaml").read_text())
    assert f"ghcr.io/zasperhub/{name}:" in text
    assert values["image"][name]["repository"] == f"ghcr.io/zasperhub/{name}"
    ignore = (REPO / "docker" / f"Dockerfile.{name}.dockerignore").read_text()
    assert "platform/ui/node_modules" in ignore
