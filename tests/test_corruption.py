"""Random damage to any file of a run: reading it is a ``CheckpointError`` or the same content.

A run that was copied badly or sat on a failing disk must never load as a silently different
model, and never crash a reader with anything but a one-line ``CheckpointError``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charpoet.checkpoint import RunDir, load_training_state
from charpoet.errors import CheckpointError
from charpoet.integrity import CRC_KEY, seal_json, seal_safetensors, unseal_json, verify_safetensors

# the files a run needs to resume or generate, and what reading each one gives
READERS = {
    "config.json": lambda rd: rd.read_config(),
    "vocab.json": lambda rd: rd.read_vocab().to_dict(),
    "sources.json": lambda rd: [(s.name, s.title, s.author, s.path, s.sha256) for s in rd.read_library()],
    "sources.bin": lambda rd: [s.text for s in rd.read_library()],
    "best.safetensors": lambda rd: rd.load_weights("best"),
    "last.safetensors": lambda rd: _training_state(rd),
}


def _training_state(rd: RunDir) -> Any:
    ts = load_training_state(rd)
    return ts.model, ts.trainer, ts.hidden


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.fixture(scope="module")
def pristine(trained_run: Path) -> tuple[Path, dict[str, Any]]:
    rd = RunDir(trained_run)
    return trained_run, {name: read(rd) for name, read in READERS.items()}


DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip-bit"), st.floats(0.0, 0.999), st.integers(0, 7)),
    st.tuples(st.just("overwrite"), st.floats(0.0, 0.999), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("zero-block"), st.floats(0.0, 0.999), st.integers(1, 4096)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
)


def _damage(data: bytes, how: tuple) -> bytes:
    kind = how[0]
    if kind == "append":
        return data + how[1]
    at = int(how[1] * len(data))
    if kind == "truncate":
        return data[:at]
    if kind == "flip-bit":
        return data[:at] + bytes([data[at] ^ (1 << how[2])]) + data[at + 1:]
    if kind == "overwrite":
        return data[:at] + how[2] + data[at + len(how[2]):]
    return data[:at] + bytes(min(how[2], len(data) - at)) + data[at + how[2]:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(READERS)), how=DAMAGE)
def test_a_damaged_run_file_is_an_error_or_reads_the_same(pristine, name: str, how: tuple) -> None:
    source, expected = pristine
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(source, run)
        data = (run / name).read_bytes()
        damaged = _damage(data, how)
        (run / name).write_bytes(damaged)
        try:
            got = READERS[name](RunDir(run))
        except CheckpointError as exc:
            assert "\n" not in str(exc) and name in str(exc)
            return
        assert _same(got, expected[name]), f"{name} damaged by {how[0]} read as different content"


@pytest.mark.parametrize("name", ["metrics.json", "metrics.jsonl"])
@given(how=DAMAGE)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_damaged_records_are_an_error_or_records(trained_run: Path, name: str, how: tuple) -> None:
    """The metrics are records: checked for their structure, never a crash."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(trained_run, run)
        path = run / name
        path.write_bytes(_damage(path.read_bytes(), how))
        rd = RunDir(run)
        try:
            records = rd.read_metrics() if name == "metrics.json" else rd.read_metrics_log()
        except CheckpointError:
            return
        assert all(isinstance(r, dict) and isinstance(r.get("step"), int) for r in records)


def test_checksums_are_written_and_checked(trained_run: Path, tmp_path: Path) -> None:
    import json

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    assert config[CRC_KEY] == seal_json(config)[CRC_KEY]
    # a hand edit without the checksum is read as it is; with a stale one it is an error
    config["train"]["learning_rate"] = 0.5
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json is corrupt: .*delete its \"crc32\" entry"):
        RunDir(run).read_config()
    del config[CRC_KEY]
    (run / "config.json").write_text(json.dumps(config))
    assert RunDir(run).read_config().train.learning_rate == 0.5
    # safetensors: the checksum covers the header's metadata too
    data = (run / "best.safetensors").read_bytes()
    verify_safetensors(data, "best")
    with pytest.raises(CheckpointError, match="do not match its checksum"):
        verify_safetensors(data.replace(b'"step', b'"stop', 1), "best")
    assert unseal_json({"a": 1}, "x") == {"a": 1}  # files from before checksums
    with pytest.raises(ValueError):
        seal_safetensors(data)  # sealing needs the placeholder
