"""Shared fixtures: every test gets its own ``CHARPOET_HOME``; shared corpora are optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Isolate all user state (caches, downloads) in a fresh directory per test."""
    home = tmp_path_factory.mktemp("charpoet_home")
    monkeypatch.setenv("CHARPOET_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    """The shared test corpora; skipped when absent, but a failure when ``CI=true``."""
    if not SHARED_CORPORA.is_dir():
        reason = f"shared corpora not found at {SHARED_CORPORA}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (required when CI=true)")
        pytest.skip(reason)
    return SHARED_CORPORA


TINY_LINES = [
    "The cat sat on the mat.",
    "A dog ran in the fog.",
    "ROMEO: what light through yonder window breaks?",
    "JULIET: it is the east, and the sun is here.",
]


def write_targz(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz at ``path`` holding ``members`` (name -> bytes): stand-ins for downloaded archives."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_text(lines: int = 400, seed: int = 0) -> str:
    """A small, learnable text: known lines in a seeded random order."""
    import random

    rng = random.Random(seed)
    return "\n".join(rng.choice(TINY_LINES) for _ in range(lines)) + "\n"


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A directory with two small text files (two sources)."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "one.txt").write_text(make_text(300, seed=1), encoding="utf-8")
    (root / "two.txt").write_text(make_text(200, seed=2), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small char model trained once per test session on ``make_text`` (no dropout)."""
    from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from charpoet.train import train

    root = tmp_path_factory.mktemp("trained")
    (root / "text.txt").write_text(make_text(400), encoding="utf-8")
    config = RunConfig(
        model=ModelConfig(rnn_size=32, embedding_size=16, drop_rate=0.0),
        data=DataConfig(text_path=[str(root / "text.txt")], batch_size=8, seq_len=32),
        train=TrainConfig(learning_rate=1e-2, warmup_steps=5, num_epochs=5.0, stats_every="1000steps", device="cpu"),
    )
    train(config, root / "run")
    return root / "run"


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless with a fresh temporary profile, through Playwright, once per session
    (a second Playwright could not start while one runs); skipped with the reason when Playwright or
    Chromium is missing, except under ``CI=true``, where that fails."""
    def unavailable(reason: str) -> None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (required when CI=true)")
        pytest.skip(reason)

    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    expect.set_options(timeout=60_000)  # generous: a slow machine only makes the tests slower
    if not CHROMIUM.is_file():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium; make test does it as root)")
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield found
        found.close()


@pytest.fixture
def tiny_config():
    """A model and schedule small enough to train in a second or two."""
    from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    def build(text_path: Path, **train: object) -> RunConfig:
        t = {"learning_rate": 1e-2, "warmup_steps": 5, "num_epochs": 2.0, "stats_every": "20steps", "device": "cpu", **train}
        return RunConfig(
            model=ModelConfig(rnn_size=32, embedding_size=16, num_layers=2, drop_rate=0.1),
            data=DataConfig(text_path=[str(text_path)], batch_size=8, seq_len=32),
            train=TrainConfig(**t),
        ).validate()

    return build

from gutenberg_server import gutenberg_mirror_dir, gutenberg_server  # noqa: E402,F401
