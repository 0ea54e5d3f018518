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
