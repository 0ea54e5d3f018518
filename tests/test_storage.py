"""Runs at fsspec URLs: staging, push/pull, atomic uploads and downloads, remove."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import fsspec
import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CheckpointError
from charpoet.storage import RunLocation, is_remote, open_run

URL = "memory://runs/x"


@pytest.fixture(autouse=True)
def memfs():
    """The memory file system is process-wide: start and end every test with it empty."""
    fs = fsspec.filesystem("memory")

    def clear() -> None:
        fs.store.clear()
        fs.pseudo_dirs[:] = [""]

    clear()
    yield fs
    clear()


def make_run(loc: RunLocation) -> dict[str, bytes]:
    """Stage a small run the way training writes it (atomic writes); returns its files."""
    files = {
        "config.json": b'{"model": {}}\n',
        "vocab.json": b'{"kind": "char", "chars": "ab"}\n',
        "metrics.json": b"[]\n",
        "best.safetensors": save_safetensors({"w": torch.ones(3)}),
        "last.safetensors": save_safetensors({"model.w": torch.zeros(3)}),
        "samples/0001.txt": b"to be or not",
        "tensorboard/events.out": b"\x00\x01",
    }
    for rel, data in files.items():
        atomic_write_bytes(loc.local / rel, data)
    return files


def remote_names(fs: MemoryFileSystem, root: str = "/runs/x") -> set[str]:
    return {p[len(root) + 1 :] for p in fs.store if p.startswith(root + "/")}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("s3://bucket/runs/x", True),
        ("gs://bucket/x", True),
        ("memory://runs/x", True),
        ("file:///tmp/runs/x", True),
        ("simplecache::s3://bucket/x", True),
        ("runs/x", False),
        ("/abs/runs/x", False),
        ("C:\\runs\\x", False),
        ("C:/runs/x", False),
        ("./s3://x", False),
        ("", False),
        (Path("runs/x"), False),
    ],
)
def test_is_remote(path, expected):
    assert is_remote(path) is expected


def test_staging_dir_is_under_charpoet_home_and_stable(isolated_home):
    loc = RunLocation(URL + "/")
    assert loc.remote and loc.url == URL
    assert loc.local.parent == isolated_home / "remote-runs"
    assert RunLocation(URL).local == loc.local == open_run(URL).local
    assert RunLocation("memory://runs/y").local != loc.local
    assert not loc.local.exists()  # nothing is created until something is pulled or written


def test_local_paths_are_noops(tmp_path):
    path = tmp_path / "run"
    loc = RunLocation(path)
    assert not loc.remote and loc.local == path and loc.url == str(path)
    assert not loc.exists()
    make_run(loc)
    assert loc.exists()
    assert loc.push() == [] and loc.pull() == [] and loc.pending() == []
    (path / "notes.txt").write_text("mine")
    loc.remove()
    assert not loc.exists()
    assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]  # foreign files stay


def test_push_uploads_new_and_changed_files_only(memfs):
    loc = RunLocation(URL)
    files = make_run(loc)
    assert loc.pending() == sorted(files)
    pushed = loc.push()
    assert sorted(pushed) == sorted(files)
    assert remote_names(memfs) == set(files)
    assert all(memfs.cat_file(f"/runs/x/{rel}") == data for rel, data in files.items())
    assert loc.pending() == []
    assert loc.push() == []
    atomic_write_bytes(loc.local / "metrics.json", b'[{"step": 1}]\n')
    assert loc.push() == ["metrics.json"]
    assert memfs.cat_file("/runs/x/metrics.json") == b'[{"step": 1}]\n'
    (loc.local / "samples" / "0001.txt").write_bytes(b"to be or not to be")  # changed in place
    assert loc.push() == ["samples/0001.txt"]


def test_push_names_and_hidden_files(memfs):
    loc = RunLocation(URL)
    make_run(loc)
    (loc.local / ".vocab.json.abc.tmp").write_bytes(b"half")  # an interrupted local write
    assert loc.push(["samples", "vocab.json"]) == ["samples/0001.txt", "vocab.json"]
    assert loc.push(["vocab.json"]) == []
    assert loc.push(["vocab.json"], force=True) == ["vocab.json"]
    for bad in ("nope.json", "../x", "/etc/passwd"):
        with pytest.raises(CheckpointError, match="cannot upload"):
            loc.push([bad])
    loc.push()
    assert not any(".tmp" in name or name.startswith(".") for name in remote_names(memfs))


def test_config_is_uploaded_last(memfs, monkeypatch):
    loc = RunLocation(URL)
    make_run(loc)
    arrived: list[str] = []
    original = MemoryFileSystem.mv

    def recording_mv(self, path1, path2, **kwargs):
        arrived.append(path2.rsplit("/runs/x/", 1)[1])
        return original(self, path1, path2, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "mv", recording_mv)
    pushed = loc.push()
    assert arrived == pushed
    assert pushed[-2:] == ["last.safetensors", "config.json"]


def test_run_exists_only_once_config_is_there(memfs):
    loc = RunLocation(URL)
    make_run(loc)
    assert not loc.exists()
    loc.push(["vocab.json", "last.safetensors"])
    assert not loc.exists()
    loc.push()
    assert loc.exists()


def test_pull_into_fresh_staging_reproduces_the_run(memfs, tmp_path):
    writer = RunLocation(URL)
    files = make_run(writer)
    writer.push()
    (writer.local / "notes.txt").write_bytes(b"not a run file")
    writer.push()
    reader = RunLocation(URL, staging_root=tmp_path / "elsewhere")
    assert reader.local.parent == tmp_path / "elsewhere"
    pulled = reader.pull()
    assert sorted(pulled) == sorted(files)  # notes.txt is not part of a run
    assert pulled[-2:] == ["last.safetensors", "config.json"]  # a partial pull is never a run
    for rel, data in files.items():
        assert (reader.local / rel).read_bytes() == data
    assert RunLocation(reader.local).exists()
    assert reader.pending() == [] and reader.push() == []  # pulled files count as synced


def test_pull_replaces_stale_copies_and_keeps_unpushed_work(memfs, tmp_path):
    writer = RunLocation(URL)
    make_run(writer)
    writer.push()
    reader = RunLocation(URL, staging_root=tmp_path / "reader")
    reader.pull()
    atomic_write_bytes(writer.local / "metrics.json", b'[{"step": 2}]\n')
    writer.push()
    memfs.rm_file("/runs/x/best.safetensors")  # dropped remotely
    atomic_write_bytes(reader.local / "vocab.json", b"unpushed\n")
    pulled = reader.pull()
    assert "metrics.json" in pulled and "vocab.json" not in pulled
    assert (reader.local / "metrics.json").read_bytes() == b'[{"step": 2}]\n'
    assert (reader.local / "vocab.json").read_bytes() == b"unpushed\n"
    assert not (reader.local / "best.safetensors").exists()
    assert reader.pending() == ["vocab.json"]


def test_failed_upload_leaves_no_partial_file_and_is_retried(memfs, monkeypatch):
    loc = RunLocation(URL)
    files = make_run(loc)
    loc.push()
    new_last = save_safetensors({"model.w": torch.arange(1000.0)})
    atomic_write_bytes(loc.local / "last.safetensors", new_last)
    atomic_write_bytes(loc.local / "metrics.json", b'[{"step": 9}]\n')
    atomic_write_bytes(loc.local / "config.json", b'{"model": {"v": 2}}\n')
    original = MemoryFileSystem.put_file

    def flaky_put_file(self, lpath, rpath, **kwargs):
        if "last.safetensors" in rpath:
            with self.open(rpath, "wb") as f:  # half the bytes arrive, then the line drops
                f.write(Path(lpath).read_bytes()[:100])
            raise OSError("connection reset\nby peer")
        return original(self, lpath, rpath, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "put_file", flaky_put_file)
    with pytest.raises(CheckpointError) as info:
        loc.push()
    message = str(info.value)
    assert message == f"cannot upload last.safetensors to {URL}: connection reset by peer"
    assert "\n" not in message
    assert memfs.cat_file("/runs/x/last.safetensors") == files["last.safetensors"]  # the old one, whole
    assert memfs.cat_file("/runs/x/config.json") == files["config.json"]  # not moved on past last
    assert memfs.cat_file("/runs/x/metrics.json") == b'[{"step": 9}]\n'
    assert remote_names(memfs) == set(files)  # no temporary left behind
    assert (loc.local / "last.safetensors").read_bytes() == new_last  # nothing lost locally
    assert loc.pending() == ["config.json", "last.safetensors"]

    monkeypatch.setattr(MemoryFileSystem, "put_file", original)
    assert loc.push() == ["last.safetensors", "config.json"]
    assert memfs.cat_file("/runs/x/last.safetensors") == new_last


def test_first_upload_failing_leaves_no_run(memfs, monkeypatch):
    loc = RunLocation(URL)
    make_run(loc)

    def broken_put_file(self, lpath, rpath, **kwargs):
        with self.open(rpath, "wb") as f:
            f.write(b"par")
        raise PermissionError("access denied")

    monkeypatch.setattr(MemoryFileSystem, "put_file", broken_put_file)
    with pytest.raises(CheckpointError, match=r"^cannot upload best\.safetensors to memory://runs/x: access denied$"):
        loc.push()
    assert remote_names(memfs) == set() and not loc.exists()


def test_interrupted_pull_leaves_no_partial_staged_file(memfs, monkeypatch, tmp_path):
    writer = RunLocation(URL)
    files = make_run(writer)
    writer.push()
    reader = RunLocation(URL, staging_root=tmp_path / "reader")
    reader.pull()
    atomic_write_bytes(writer.local / "last.safetensors", save_safetensors({"model.w": torch.ones(5)}))
    writer.push()
    original = MemoryFileSystem.get_file

    def flaky_get_file(self, rpath, lpath, **kwargs):
        if rpath.endswith("last.safetensors"):
            Path(lpath).write_bytes(b"partial")
            raise TimeoutError("read timed out")
        return original(self, rpath, lpath, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "get_file", flaky_get_file)
    with pytest.raises(CheckpointError, match=r"^cannot download last\.safetensors from memory://runs/x: read timed out$"):
        reader.pull()
    assert (reader.local / "last.safetensors").read_bytes() == files["last.safetensors"]  # old, whole
    fresh = RunLocation(URL, staging_root=tmp_path / "fresh")
    with pytest.raises(CheckpointError):
        fresh.pull()
    assert not (fresh.local / "last.safetensors").exists()
    assert not RunLocation(fresh.local).exists()  # config.json comes last: no half-pulled run
    for staged in (reader.local, fresh.local):
        assert not [p for p in staged.rglob("*") if p.name.endswith(".tmp")]

    monkeypatch.setattr(MemoryFileSystem, "get_file", original)
    assert "last.safetensors" in reader.pull()
    assert (reader.local / "last.safetensors").read_bytes() == (writer.local / "last.safetensors").read_bytes()


def test_remove_deletes_the_run_and_its_staging_copy(memfs):
    loc = RunLocation(URL)
    make_run(loc)
    loc.push()
    memfs.pipe_file("/runs/x/notes.txt", b"foreign")
    memfs.pipe_file("/runs/x/.last.safetensors.dead.tmp", b"from a crashed upload")
    loc.remove()
    assert not loc.exists() and not loc.local.exists()
    assert remote_names(memfs) == {"notes.txt"}
    loc.remove()  # nothing left to do
    assert RunLocation("memory://runs/never").pull() == []


def test_safetensors_round_trip_through_a_file_url(tmp_path):
    remote_dir = tmp_path / "bucket" / "runs" / "x"
    url = remote_dir.as_uri()
    assert url.startswith("file:///")
    writer = RunLocation(url, staging_root=tmp_path / "stage-a")
    data = save_safetensors({"w": torch.zeros(3)})
    atomic_write_bytes(writer.local / "last.safetensors", data)
    atomic_write_bytes(writer.local / "config.json", b"{}\n")
    assert writer.push() == ["last.safetensors", "config.json"]
    assert sorted(p.name for p in remote_dir.iterdir()) == ["config.json", "last.safetensors"]
    reader = RunLocation(url, staging_root=tmp_path / "stage-b")
    assert reader.exists() and reader.pull() == ["last.safetensors", "config.json"]
    assert (reader.local / "last.safetensors").read_bytes() == data
    assert torch.equal(load_safetensors(data)["w"], torch.zeros(3))
    reader.remove()
    assert not remote_dir.exists() and (tmp_path / "bucket" / "runs").is_dir()


def test_unknown_or_missing_file_systems_are_one_line_errors():
    with pytest.raises(CheckpointError, match=r"^nosuchfs://x: unknown protocol nosuchfs:// \(not a file system fsspec knows\)$"):
        RunLocation("nosuchfs://x").exists()
    if importlib.util.find_spec("s3fs") is None:
        with pytest.raises(CheckpointError, match=r"^s3://bucket/runs/x: s3:// needs the s3fs package: pip install s3fs$"):
            RunLocation("s3://bucket/runs/x").pull()
