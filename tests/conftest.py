"""Real Triton servers, started once per test session by loadgen's own embedded-server module."""

from pathlib import Path

import pytest

from loadgen.server import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = ROOT / "model_repository"
NESTED_REPOSITORY = ROOT / "tests" / "model_repos" / "nested"


def _serve(repository: Path, log: Path):
    server = EmbeddedServer(repository, log)
    endpoints = server.start()
    try:
        yield endpoints
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """The embedded server on the shipped model repository (the centernet ensemble)."""
    yield from _serve(MODEL_REPOSITORY, tmp_path_factory.mktemp("triton") / "server.log")


@pytest.fixture(scope="session")
def nested_triton(tmp_path_factory):
    """The embedded server on the nested-ensemble test repository."""
    yield from _serve(NESTED_REPOSITORY, tmp_path_factory.mktemp("nested") / "server.log")
