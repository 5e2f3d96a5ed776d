"""Shared test helpers: small configs that exercise every named choice, quickly."""

from __future__ import annotations

import os
import random
import tempfile

import pytest
import torch

from dimsearch.config import (
    HEAD_POOLS,
    KV_REDUCTIONS,
    POS_ENCODINGS,
    STEMS,
    TRANSITIONS,
    ArchConfig,
    HeadConfig,
    StageConfig,
    StemConfig,
    TransitionConfig,
)

# The latency measurement lock is per node: tests get their own lock files, so a test that
# measures never waits for the epochs of a real search running on the same machine, and the
# search never pauses for the tests. Set before anything locks; subprocesses inherit it.
os.environ.setdefault("DIMSEARCH_LOCK_DIR", tempfile.mkdtemp(prefix="dimsearch-test-locks-"))
# Caches (decoded datasets, latency part tables) start empty, as on a fresh CI machine: a test
# never depends on, nor is changed by, what the user's ~/.cache/dimsearch happens to hold.
os.environ["DIMSEARCH_CACHE"] = tempfile.mkdtemp(prefix="dimsearch-test-cache-")


def random_arch(rng: random.Random, max_stages: int = 4) -> ArchConfig:
    """A random valid small config; every kind of every choice is reachable."""
    n = rng.randint(1, max_stages)
    pool = rng.choice(HEAD_POOLS)
    stem = StemConfig(rng.choice(STEMS), patch_size=rng.choice([4, 8]), stride=rng.choice([2, 4]))
    dims, stages = [], []
    for i in range(n):
        heads = rng.choice([1, 2, 4])
        dim = heads * rng.choice([8, 16]) if i == 0 else dims[-1] * rng.choice([1, 2])
        if dim % heads:
            heads = 1
        dims.append(dim)
        stages.append(
            StageConfig(
                depth=rng.randint(1, 2),
                dim=dim,
                heads=heads,
                mlp_ratio=rng.choice([2.0, 3.0, 4.0]),
                qkv_bias=rng.random() < 0.8,
                sr_ratio=rng.choice([1, 1, 2, 4]),
                sr_kind=rng.choice(KV_REDUCTIONS),
                head_interaction=heads > 1 and rng.random() < 0.5,
                pos=rng.choice(POS_ENCODINGS),
            )
        )
    transitions = tuple(TransitionConfig(rng.choice(TRANSITIONS)) for _ in range(n - 1))
    return ArchConfig(
        stem=stem,
        stages=tuple(stages),
        transitions=transitions,
        head=HeadConfig(pool, distilled=pool == "token" and rng.random() < 0.3),
        norm_eps=rng.choice([1e-6, 1e-5]),
    )


def random_archs(count: int, seed: int = 0, img_size: int = 64) -> list[ArchConfig]:
    """``count`` random configs whose grids are valid at ``img_size``."""
    rng = random.Random(seed)
    out: list[ArchConfig] = []
    while len(out) < count:
        cfg = random_arch(rng)
        try:
            cfg.grids(img_size)
        except ValueError:
            continue
        out.append(cfg)
    return out


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a real PostgreSQL server: CI's (``DIMSEARCH_TEST_POSTGRES``, started by
    .ci/run), else one started here when Debian's postgresql is installed, else skip.
    ``DIMSEARCH_TEST_PG_DIR`` names the server's folder, so a test can restart it."""
    import os

    import pg_server

    url = os.environ.get("DIMSEARCH_TEST_POSTGRES")
    if url:
        yield url
        return
    if pg_server.find_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # in /tmp itself: pytest's own temp folders are private to root, and the server runs as
    # the postgres user when we are root
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="dimsearch-pg-"))
    os.environ["DIMSEARCH_TEST_PG_DIR"] = str(folder)
    try:
        yield pg_server.start(folder)
    finally:
        pg_server.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the test server, so tests never see each other's studies."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def private_latency(tmp_path, monkeypatch):
    """For latency tests: private lock and cache directories (a test never waits for another
    process's measurement, nor reads its tables), and one torch thread (a shared 2-core box)."""
    from dimsearch.cost._lock import LOCK_DIR_ENV

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setenv("DIMSEARCH_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
