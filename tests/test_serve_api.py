"""The web app's JSON API through the ASGI test client: what it serves against what the library
computes (``charpoet.load(...).generate``, ``index_for_run(...).attribute``), chat turns against a
``Conversation``, the limits, run names that are paths, and bad input, which gets a one-line JSON
error, leaves the server serving and leaves every file of the runs directory as it was.

The test client streams a response's body as it is read (one event at a time), so a stream that
is opened and not read holds its generation open, as a slow browser does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import charpoet
from charpoet.attribution import index_for_run
from charpoet.chat import ChatOptions, Conversation
from charpoet.runs import list_runs
from charpoet.web.app import create_app
from charpoet.web.service import Busy, ClientSlots, Limits, Pump, Service

LIMITS = Limits(max_prompt_chars=200, max_length=1000, max_samples=4, max_streams_per_client=2,
                max_attribute_chars=5000)
CLIENT = "testclient"  # the address the test client's requests come from
QUOTED = "ROMEO: what light through yonder window breaks?\nThe cat sat on the mat."  # lines of the corpus


# --- helpers (test_serve_live uses them too) ----------------------------------------------------
def sse_events(chunks: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """``(event, data)`` of a ``text/event-stream`` body as its bytes arrive."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode("utf-8").split("\n") if line)
            yield fields["event"], json.loads(fields["data"])
    assert not buf.strip(), f"a torn event at the end: {buf!r}"


def read_stream(response: Any) -> list[tuple[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return list(sse_events([response.content]))


def generated(events: list[tuple[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The texts the token events spell, and the ``done`` event's attributions; every event checked."""
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) <= {"token"}, kinds
    done = events[-1][1]
    texts = ["" for _ in done["samples"]]
    for _, data in events[:-1]:
        assert len(data["texts"]) == len(texts)
        texts = [t + piece for t, piece in zip(texts, data["texts"])]
    return texts, done["samples"]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """(size, sha256) of every file below ``root``, by relative path."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            out[path.relative_to(root).as_posix()] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def wait_until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds (never a speed assertion)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(0.02)


def spans_without_numbers(att: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "number"} for s in att["spans"]]


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory: ``tiny`` and ``books/verne`` (copies of the trained run)."""
    root = tmp_path_factory.mktemp("serve-api") / "runs"
    shutil.copytree(trained_run, root / "tiny")
    shutil.copytree(trained_run, root / "books" / "verne")
    return root


@pytest.fixture(scope="module")
def service(runs: Path) -> Iterator[Service]:
    s = Service(root=runs, limits=LIMITS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as c:
        yield c


@pytest.fixture(scope="module")
def lm(runs: Path) -> charpoet.LanguageModel:
    return charpoet.load(runs / "tiny")


@pytest.fixture(scope="module")
def index(runs: Path) -> charpoet.CorpusIndex:
    return index_for_run(runs / "tiny")


def generate(client: TestClient, **body: Any) -> tuple[list[str], list[dict[str, Any]]]:
    return generated(read_stream(client.post("/api/generate", json={"run": "tiny", **body})))


def chat(client: TestClient, **body: Any) -> list[tuple[str, Any]]:
    return read_stream(client.post("/api/chat", json=body))


# --- runs, health --------------------------------------------------------------------------------
def test_runs_lists_what_charpoet_runs_lists(client: TestClient, runs: Path) -> None:
    got = client.get("/api/runs").json()["runs"]
    expected = [{k: v for k, v in r.to_dict().items() if k != "path"} for r in list_runs(runs)]
    assert got == expected
    assert sorted(r["name"] for r in got) == ["books/verne", "tiny"]
    tiny = next(r for r in got if r["name"] == "tiny")
    assert tiny["architecture"].startswith("char lstm") and tiny["steps"] > 0 and tiny["error"] is None


def test_health_reports_limits_and_load(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["generations"] == 0 and health["min_quote"] == 20
    assert health["limits"]["max_length"] == LIMITS.max_length
    assert health["limits"]["max_streams_per_client"] == LIMITS.max_streams_per_client


def test_openapi_describes_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/generate", "/api/attribute", "/api/chat", "/api/runs", "/api/health"} <= set(paths)


# --- generate -------------------------------------------------------------------------------------
def test_the_page_and_its_files_are_served_from_the_package_and_revalidated(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["cache-control"] == "no-cache"
    scripts = re.findall(r'src="(/static/[^"]+)"', page.text)
    assert scripts and all(not s.startswith("http") for s in re.findall(r'(?:src|href)="([^"]+)"', page.text))
    for path in [*scripts, "/static/style.css"]:
        asset = client.get(path)
        assert asset.status_code == 200 and asset.headers["cache-control"] == "no-cache", path
    assert client.get("/static/missing.js").status_code == 404


def test_one_token_event_per_token_and_the_text_is_the_librarys(client: TestClient, lm: Any, index: Any) -> None:
    events = read_stream(client.post("/api/generate", json={"run": "tiny", "prompt": "ROMEO:", "length": 120,
                                                             "seed": 7}))
    assert sum(1 for e, _ in events if e == "token") == 120
    texts, samples = generated(events)
    assert texts == lm.generate("ROMEO:", length=120, seed=7)
    assert [s["text"] for s in samples] == texts and samples[0]["prefix"] == "ROMEO:"
    expected = index.attribute(texts[0], 20).to_dict()
    assert spans_without_numbers(samples[0]) == expected["spans"]
    assert samples[0]["metrics"] == expected["metrics"]


def test_several_samples_are_written_together(client: TestClient, lm: Any) -> None:
    events = read_stream(client.post("/api/generate", json={"run": "tiny", "prompt": "The", "length": 60, "seed": 3,
                                                             "num_samples": 3, "temperature": 1.0}))
    assert sum(1 for e, _ in events if e == "token") == 60
    texts, samples = generated(events)
    assert texts == lm.generate("The", length=60, seed=3, num_samples=3, temperature=1.0)
    assert len(set(texts)) > 1 and [s["text"] for s in samples] == texts


def test_the_same_seed_writes_the_same_text(client: TestClient) -> None:
    first = generate(client, prompt="A", length=80, seed=11, temperature=1.2)[0]
    assert generate(client, prompt="A", length=80, seed=11, temperature=1.2)[0] == first
    assert generate(client, prompt="A", length=80, seed=12, temperature=1.2)[0] != first


def test_temperature_zero_is_the_librarys_greedy_text(client: TestClient, lm: Any, index: Any) -> None:
    texts, samples = generate(client, prompt="JULIET:", length=150, temperature=0)
    assert texts == lm.generate("JULIET:", length=150, temperature=0)
    assert spans_without_numbers(samples[0]) == index.attribute(texts[0], 20).to_dict()["spans"]
    assert samples[0]["spans"]  # a greedy tiny model recites its corpus: there is something to highlight
    numbers = {e["source"]: e["number"] for e in samples[0]["legend"]}
    assert all(s["number"] == numbers[s["source"]] for s in samples[0]["spans"])


def test_no_attribution_is_computed_on_the_event_loop(client: TestClient, service: Service, index: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A long attribution must not stall every other stream and request of the server."""
    import asyncio

    on_loop: list[bool] = []

    class Watched:
        def attribute(self, text: str, min_len: int) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop.append(True)
            except RuntimeError:  # a worker thread: no loop runs here
                on_loop.append(False)
            return index.attribute(text, min_len)

    monkeypatch.setattr(service.runs, "index", lambda name: Watched())
    generate(client, length=20, num_samples=2)
    assert client.post("/api/attribute", json={"run": "tiny", "text": QUOTED}).status_code == 200
    assert on_loop == [False, False, False]


def test_a_zero_length_generation_is_just_done(client: TestClient) -> None:
    assert generate(client, length=0)[0] == [""]


def test_a_run_without_its_sources_writes_text_without_highlighting(trained_run: Path, tmp_path: Path) -> None:
    shutil.copytree(trained_run, tmp_path / "bare")
    (tmp_path / "bare" / "sources.json").unlink()
    (tmp_path / "bare" / "sources.bin").unlink()
    service = Service(run=tmp_path / "bare")
    with TestClient(create_app(service)) as client:
        events = read_stream(client.post("/api/generate", json={"run": "bare", "length": 30, "seed": 1}))
        texts, samples = generated(events)
        assert texts == charpoet.load(trained_run).generate("\n", length=30, seed=1)
        assert samples[0]["spans"] == [] and events[-1][1]["attribution_error"]
        response = client.post("/api/attribute", json={"run": "bare", "text": QUOTED})
        assert response.status_code in (400, 409) and response.json()["error"]
    service.close()


# --- attribute ------------------------------------------------------------------------------------
@pytest.mark.parametrize("min_quote", [None, 12, 40])
def test_attribute_is_the_indexs_attribution(client: TestClient, index: Any, min_quote: int | None) -> None:
    text = "xq " + QUOTED + " qx"
    body = {"run": "tiny", "text": text} | ({} if min_quote is None else {"min_quote": min_quote})
    got = client.post("/api/attribute", json=body).json()
    expected = index.attribute(text, min_quote or 20).to_dict()
    assert got["text"] == text and got["min_len"] == (min_quote or 20)
    assert spans_without_numbers(got) == expected["spans"] and got["metrics"] == expected["metrics"]
    assert got["spans"] and {e["source"] for e in got["legend"]} == {s["source"] for s in got["spans"]}
    assert all(e["colour"].startswith("#") and len(e["colour"]) == 7 for e in got["legend"])


# --- chat -----------------------------------------------------------------------------------------
CHAT = {"temperature": 0.9, "seed": 4, "max_length": 80}


def test_chat_turns_match_a_conversation_and_undo_and_reset_work(client: TestClient, lm: Any) -> None:
    library = Conversation(lm, ChatOptions(temperature=0.9, seed=4, max_length=80))
    events = chat(client, run="tiny", text="The cat sat", **CHAT)
    assert events[0][0] == "start" and events[0][1]["run"] == "tiny"
    cid = events[0][1]["conversation"]
    assert events[-1][0] == "done" and {e for e, _ in events[1:-1]} <= {"token"}
    answer = library.say("The cat sat")
    assert "".join(d["text"] for e, d in events if e == "token") == answer
    assert events[-1][1]["answer"] == answer and events[-1][1]["stop"] == library.turns[-1].stop

    events = chat(client, conversation=cid, text="ROMEO: what light", **CHAT)
    assert events[0][1]["conversation"] == cid
    second = library.say("ROMEO: what light")
    conv = client.get(f"/api/chat/{cid}").json()
    assert conv == events[-1][1]
    assert conv["answer"] == second
    assert conv["turns"] == [{"user": t.user, "answer": t.answer, "stop": t.stop} for t in library.turns]

    undone = client.post("/api/chat/undo", json={"conversation": cid}).json()
    assert undone["undone"] is True and [t["user"] for t in undone["turns"]] == ["The cat sat"]
    library.undo()
    events = chat(client, conversation=cid, text="A dog", **CHAT)  # undo restored the state: the same answer
    assert events[-1][1]["answer"] == library.say("A dog")

    reset = client.post("/api/chat/reset", json={"conversation": cid}).json()
    assert reset["turns"] == [] and reset["answer"] is None
    assert client.post("/api/chat/undo", json={"conversation": cid}).json()["undone"] is False
    events = chat(client, conversation=cid, text="The cat sat", **CHAT)  # reset reseeds: the first answer again
    assert events[-1][1]["answer"] == answer


def test_unknown_characters_are_400_and_the_conversation_is_unchanged(client: TestClient) -> None:
    events = chat(client, run="tiny", text="The cat", **CHAT)
    cid = events[0][1]["conversation"]
    before = client.get(f"/api/chat/{cid}").json()
    bad = client.post("/api/chat", json={"conversation": cid, "text": "The cat\u20ac", **CHAT})
    assert bad.status_code == 400 and "\u20ac" in bad.json()["error"]
    assert client.get(f"/api/chat/{cid}").json() == before
    count = client.get("/api/health").json()["conversations"]
    bad = client.post("/api/chat", json={"run": "tiny", "text": "Zebra\u20ac", **CHAT})  # a first turn
    assert bad.status_code == 400
    assert client.get("/api/health").json()["conversations"] == count  # no empty conversation left behind
    assert chat(client, conversation=cid, text="A dog", **CHAT)[-1][0] == "done"  # it goes on


def test_unknown_conversations_are_404(client: TestClient) -> None:
    for response in (client.get("/api/chat/nope"), client.post("/api/chat/undo", json={"conversation": "nope"}),
                     client.post("/api/chat/reset", json={"conversation": "nope"}),
                     client.post("/api/chat", json={"conversation": "nope", "text": "hi"})):
        assert response.status_code == 404 and "conversation" in response.json()["error"]


def test_a_turn_cut_short_changes_nothing_and_a_busy_conversation_is_409(
        client: TestClient, service: Service, lm: Any) -> None:
    long = {"temperature": 0, "max_length": 1000, "sentences": 1000}  # greedy: the corpus has no blank line
    library = Conversation(lm, ChatOptions(**CHAT))
    first = library.say("The cat")
    probe = Conversation(lm, ChatOptions(**CHAT))
    probe.say("The cat")
    probe.options = ChatOptions(**long)
    probe.say("A dog")
    assert probe.turns[-1].stop == "max_length"  # the cut answer would run 1000 tokens: it is cut mid-answer

    cid = chat(client, run="tiny", text="The cat", **CHAT)[0][1]["conversation"]
    with client.stream("POST", "/api/chat", json={"conversation": cid, "text": "A dog", **long}) as r:
        events = sse_events(r.iter_raw())
        assert next(events)[0] == "start" and next(events)[0] == "token"  # the answer has begun
        busy = client.post("/api/chat", json={"conversation": cid, "text": "again", **CHAT})
        assert busy.status_code == 409 and "answering" in busy.json()["error"]
        assert client.post("/api/chat/undo", json={"conversation": cid}).status_code == 409
        assert client.get("/api/health").json()["generations"] == 1
    wait_until(lambda: client.get("/api/health").json()["generations"] == 0, "the cut answer's slot is given back")
    conv = client.get(f"/api/chat/{cid}").json()
    assert [t["answer"] for t in conv["turns"]] == [first]
    events = chat(client, conversation=cid, text="JULIET:", **CHAT)  # as if the cut turn never happened
    assert events[-1][1]["answer"] == library.say("JULIET:")


# --- metrics and samples --------------------------------------------------------------------------
def test_metrics_are_the_runs_history(client: TestClient, runs: Path) -> None:
    lines = [{"kind": "train", "step": 1, "loss": 4.1, "lr": 0.01}, {"kind": "eval", "step": 2, "val_loss": 3.5}]
    path = runs / "books" / "verne" / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + '\n{"kind": "train", "step": 3, "loss": NaN}\n'
                    '{"kind": "tr', encoding="utf-8")  # a diverged step, then a torn line
    old = time.time() - 3600
    os.utime(path, (old, old))
    got = client.get("/api/runs/books/verne/metrics").json()
    assert got == {"run": "books/verne", "training": False,
                   "records": [*lines, {"kind": "train", "step": 3, "loss": None}]}
    os.utime(path)  # written just now: a run that is training
    assert client.get("/api/runs/books/verne/metrics").json()["training"] is True
    log = runs / "tiny" / "metrics.jsonl"
    expected = [json.loads(x) for x in log.read_text().splitlines() if x] if log.exists() else []
    assert client.get("/api/runs/tiny/metrics").json()["records"] == expected


def test_samples_are_the_latest_with_attribution(client: TestClient, runs: Path, index: Any) -> None:
    texts = ["The cat sat on the mat.\nA dog ran", "xx " + QUOTED, "nothing copied here"]
    with open(runs / "books" / "verne" / "samples.jsonl", "w", encoding="utf-8") as f:
        for step, text in enumerate(texts, 1):
            f.write(json.dumps({"step": step * 100, "temperature": 0.5, "text": text, "copy_rate": 0.0,
                                "longest": 0, "time": 1.5e9 + step}) + "\n")
        f.write('{"step": 400, "text": "torn')
    got = client.get("/api/runs/books/verne/samples?limit=2").json()
    assert got["run"] == "books/verne" and [s["step"] for s in got["samples"]] == [200, 300]
    for sample, text in zip(got["samples"], texts[1:]):
        assert sample["attribution"]["text"] == text and sample["temperature"] == 0.5
        assert spans_without_numbers(sample["attribution"]) == index.attribute(text, 20).to_dict()["spans"]
    assert len(client.get("/api/runs/books/verne/samples").json()["samples"]) == 3
    assert client.get("/api/runs/books/verne/samples?limit=0").json()["samples"] == []
    assert client.get("/api/runs/books/verne/samples?limit=101").status_code == 400


# --- limits ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "words"), [
    ("/api/generate", {"run": "tiny", "prompt": "a" * 201}, "prompt is too long"),
    ("/api/generate", {"run": "tiny", "length": 1001}, "length must be at most 1,000"),
    ("/api/generate", {"run": "tiny", "num_samples": 5}, "num_samples must be at most 4"),
    ("/api/chat", {"run": "tiny", "text": "a" * 201}, "text is too long"),
    ("/api/chat", {"run": "tiny", "text": "a", "max_length": 1001}, "max_length must be at most"),
    ("/api/chat", {"run": "tiny", "text": "a", "user_prefix": "a" * 201}, "user_prefix is too long"),
    ("/api/attribute", {"run": "tiny", "text": "a" * 5001}, "text is too long"),
])
def test_requests_over_the_limits_are_400(client: TestClient, path: str, body: dict[str, Any], words: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400 and words in response.json()["error"]
    assert client.get("/api/health").json()["generations"] == 0


def test_client_slots() -> None:
    slots = ClientSlots(2)
    a1, a2 = slots.acquire("a"), slots.acquire("a")
    with pytest.raises(Busy):
        slots.acquire("a")
    b = slots.acquire("b")  # another client is not held back
    assert slots.active == 3
    a1()
    a1()  # giving back twice gives back once
    assert slots.active == 2
    slots.acquire("a")()
    a2(), b()
    assert slots.active == 0


def test_more_streams_than_the_limit_is_429(client: TestClient, service: Service) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(LIMITS.max_streams_per_client):  # held open: not read
            r = stack.enter_context(client.stream("POST", "/api/generate", json={"run": "tiny", "length": 1000}))
            assert r.status_code == 200
        assert client.get("/api/health").json()["generations"] == LIMITS.max_streams_per_client
        for path, body in (("/api/generate", {"run": "tiny"}), ("/api/chat", {"run": "tiny", "text": "a"})):
            response = client.post(path, json=body)
            assert response.status_code == 429 and "too many" in response.json()["error"]
    wait_until(lambda: service.slots.active == 0, "the closed streams give their slots back")
    release = service.slots.acquire(CLIENT)  # one held by this client elsewhere: one left
    try:
        assert generate(client, length=5)[0][0]
    finally:
        release()


class _Numbers:
    """An iterator of 0, 1, 2, ... that can stand still in ``next`` until told to go on."""

    def __init__(self) -> None:
        self.n, self.closed = 0, False

    def __iter__(self) -> _Numbers:
        return self

    def __next__(self) -> int:
        self.n += 1
        return self.n - 1

    def close(self) -> None:
        self.closed = True


def test_a_pump_is_closed_once_however_it_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    closes: list[int] = []
    it = _Numbers()
    pump = Pump(it, on_close=lambda: closes.append(1))
    assert pump.pull(3, 10.0) == [0, 1, 2]
    pump.cancel()  # no pull running: closed at once
    assert it.closed and closes == [1] and pump.pull(3, 10.0) == []
    pump.cancel()
    assert closes == [1]

    # a cancel that comes while a pull runs, after the pull's last look at it (here: from inside
    # the pull's clock, as another thread's cancel might), must still close the pump
    import charpoet.web.service as service_module

    it, closes = _Numbers(), []
    pump = Pump(it, on_close=lambda: closes.append(1))

    class Clock:
        calls = 0

        @staticmethod
        def perf_counter() -> float:
            Clock.calls += 1
            if Clock.calls == 2:
                pump.cancel()  # the pull holds the lock: this cancel cannot close it itself
            return 0.0

    monkeypatch.setattr(service_module, "time", Clock)
    pump.pull(1, 10.0)
    assert it.closed and closes == [1]


# --- run names that are paths -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    """A runs directory with a run, a hidden run, a symlink to a run outside it, one to a file
    outside it, and one to the run inside it; the outside run's metrics hold a secret."""
    base = tmp_path_factory.mktemp("serve-guard")
    root, outside = base / "runs", base / "outside"
    shutil.copytree(trained_run, root / "tiny")
    shutil.copytree(trained_run, root / ".hidden")
    shutil.copytree(trained_run, outside / "run")
    (outside / "run" / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "secret": "s3cr3t"}\n')
    (outside / "secret.txt").write_text("s3cr3t\n")
    (root / "escape").symlink_to(outside / "run", target_is_directory=True)
    (root / "file").symlink_to(outside / "secret.txt")
    (root / "inner").symlink_to(root / "tiny", target_is_directory=True)
    service = Service(root=root)
    with TestClient(create_app(service)) as c:
        yield c, root
    service.close()


BAD_NAMES = ["..", "../x", "../outside/run", "/etc", "/", "a/../b", "tiny/../tiny", "./tiny", "tiny/", "tiny/.",
             ".hidden", "a\\b", "..\\tiny", "tiny\x00", "tiny\n", "", "a/b/c/d", "x" * 300]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_run_name_that_is_a_path_is_400(guarded: tuple[TestClient, Path], name: str) -> None:
    client, _ = guarded
    for path, body in (("/api/generate", {"run": name, "length": 5}), ("/api/attribute", {"run": name, "text": "x"}),
                       ("/api/chat", {"run": name, "text": "x"})):
        response = client.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert "s3cr3t" not in response.text


@pytest.mark.parametrize("name", ["escape", "file", "nope", "tiny/nope"])
def test_a_symlink_out_of_the_runs_directory_is_never_served(guarded: tuple[TestClient, Path], name: str) -> None:
    client, _ = guarded
    for response in (client.get(f"/api/runs/{name}/metrics"), client.get(f"/api/runs/{name}/samples"),
                     client.post("/api/generate", json={"run": name, "length": 5}),
                     client.post("/api/attribute", json={"run": name, "text": "x"}),
                     client.post("/api/chat", json={"run": name, "text": "x"})):
        assert response.status_code == 404, response.text
        assert "s3cr3t" not in response.text and "outside" not in response.text


def test_the_run_list_holds_only_what_may_be_served(guarded: tuple[TestClient, Path]) -> None:
    client, _ = guarded
    names = sorted(r["name"] for r in client.get("/api/runs").json()["runs"])
    assert names == ["inner", "tiny"]  # a symlink inside the directory is served; one out of it is not listed
    assert generate(client, length=5, seed=1)[0] == generate(client, run="inner", length=5, seed=1)[0]


@pytest.mark.parametrize("raw", ["%2e%2e", "%2E%2E/escape", "..%2f..%2fetc", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                 "%2fetc", ".hidden", "tiny%5c..", "tiny%00", "a/b/c/d"])
def test_an_encoded_path_in_the_url_is_400(guarded: tuple[TestClient, Path], raw: str) -> None:
    client, _ = guarded
    for what in ("metrics", "samples"):
        response = client.get(f"/api/runs/{raw}/{what}")
        assert response.status_code == 400, (raw, response.status_code, response.text)
        assert "s3cr3t" not in response.text


# --- bad input --------------------------------------------------------------------------------------
JSON = {"content-type": "application/json"}
# (id, method, path, body: a dict sent as JSON or bytes sent as they are, status, words in the error)
BAD: list[tuple[str, str, str, Any, int, str]] = [
    ("malformed-json", "POST", "/api/generate", b'{"run": "tiny", ', 400, "JSON"),
    ("not-utf8", "POST", "/api/generate", b'{"run": "tiny\xff\xfe"}', 400, ""),
    ("nan-temperature", "POST", "/api/generate", b'{"run": "tiny", "temperature": NaN, "length": 5}', 400, "temperature"),
    ("infinite-temperature", "POST", "/api/generate", b'{"run": "tiny", "temperature": Infinity}', 400, "temperature"),
    ("nan-top-p", "POST", "/api/generate", b'{"run": "tiny", "top_p": NaN}', 400, "top_p"),
    ("huge-float-length", "POST", "/api/generate", b'{"run": "tiny", "length": 1e400}', 400, "length"),
    ("negative-length", "POST", "/api/generate", {"run": "tiny", "length": -5}, 400, "length"),
    ("huge-length", "POST", "/api/generate", {"run": "tiny", "length": 10**30}, 400, "length"),
    ("zero-samples", "POST", "/api/generate", {"run": "tiny", "num_samples": 0}, 400, "num_samples"),
    ("negative-samples", "POST", "/api/generate", {"run": "tiny", "num_samples": -10**20}, 400, "num_samples"),
    ("negative-top-k", "POST", "/api/generate", {"run": "tiny", "top_k": -1}, 400, "top_k"),
    ("zero-top-p", "POST", "/api/generate", {"run": "tiny", "top_p": 0}, 400, "top_p"),
    ("big-top-p", "POST", "/api/generate", {"run": "tiny", "top_p": 1.5}, 400, "top_p"),
    ("negative-temperature", "POST", "/api/generate", {"run": "tiny", "temperature": -1}, 400, "temperature"),
    ("huge-seed", "POST", "/api/generate", {"run": "tiny", "seed": 10**30}, 400, "seed"),
    ("zero-min-quote", "POST", "/api/generate", {"run": "tiny", "min_quote": 0}, 400, "min-quote"),
    ("length-a-word", "POST", "/api/generate", {"run": "tiny", "length": "many"}, 400, "length"),
    ("length-fraction", "POST", "/api/generate", {"run": "tiny", "length": 5.5}, 400, "length"),
    ("prompt-a-number", "POST", "/api/generate", {"run": "tiny", "prompt": 5}, 400, "prompt"),
    ("run-a-list", "POST", "/api/generate", {"run": ["tiny"]}, 400, "run"),
    ("temperature-a-word", "POST", "/api/generate", {"run": "tiny", "temperature": "hot"}, 400, "temperature"),
    ("body-a-list", "POST", "/api/generate", [{"run": "tiny"}], 400, ""),
    ("body-a-string", "POST", "/api/generate", "tiny", 400, ""),
    ("body-null", "POST", "/api/generate", b"null", 400, ""),
    ("body-empty", "POST", "/api/generate", b"", 400, "JSON body"),
    ("body-deeply-nested", "POST", "/api/generate", b"[" * 50_000 + b"]" * 50_000, 400, ""),
    ("body-too-large", "POST", "/api/generate", b"[" * 100_000 + b"]" * 100_000, 413, "larger"),
    ("unknown-field", "POST", "/api/generate", {"run": "tiny", "lenght": 5}, 400, "lenght"),
    ("missing-run", "POST", "/api/generate", {"prompt": "a"}, 400, "run"),
    ("unknown-run", "POST", "/api/generate", {"run": "nope"}, 404, "nope"),
    ("unknown-characters", "POST", "/api/generate", {"run": "tiny", "prompt": "Zebra\u20ac"}, 400, "\u20ac"),
    ("empty-prompt", "POST", "/api/generate", {"run": "tiny", "prompt": ""}, 400, "empty"),
    ("attribute-missing-text", "POST", "/api/attribute", {"run": "tiny"}, 400, "text"),
    ("attribute-zero-min-quote", "POST", "/api/attribute", {"run": "tiny", "text": "a", "min_quote": 0}, 400, "min-quote"),
    ("attribute-unknown-run", "POST", "/api/attribute", {"run": "nope", "text": "a"}, 404, "nope"),
    ("chat-missing-text", "POST", "/api/chat", {"run": "tiny"}, 400, "text"),
    ("chat-no-run-nor-conversation", "POST", "/api/chat", {"text": "a"}, 400, "run"),
    ("chat-zero-sentences", "POST", "/api/chat", {"run": "tiny", "text": "a", "sentences": 0}, 400, "sentences"),
    ("chat-nan-top-p", "POST", "/api/chat", b'{"run": "tiny", "text": "a", "top_p": NaN}', 400, "top_p"),
    ("chat-unknown-prefix-characters", "POST", "/api/chat", {"run": "tiny", "text": "a", "user_prefix": "\u20ac"}, 400, "\u20ac"),
    ("undo-no-id", "POST", "/api/chat/undo", {}, 400, "conversation"),
    ("undo-id-a-number", "POST", "/api/chat/undo", {"conversation": 5}, 400, "conversation"),
    ("samples-limit-a-word", "GET", "/api/runs/tiny/samples?limit=all", None, 400, "limit"),
    ("samples-negative-limit", "GET", "/api/runs/tiny/samples?limit=-1", None, 400, "limit"),
    ("metrics-unknown-run", "GET", "/api/runs/nope/metrics", None, 404, "nope"),
    ("get-generate", "GET", "/api/generate", None, 405, ""),
    ("get-attribute", "GET", "/api/attribute", None, 405, ""),
    ("put-runs", "PUT", "/api/runs", None, 405, ""),
    ("delete-chat", "DELETE", "/api/chat/abc", None, 405, ""),
    ("unknown-route", "GET", "/api/nope", None, 404, ""),
    ("unknown-route-post", "POST", "/api/nope", {"run": "tiny"}, 404, ""),
]


@pytest.fixture(scope="module")
def warm(client: TestClient) -> TestClient:
    """A client whose runs have served once (the first attribution writes the index into the run)."""
    for run in ("tiny", "books/verne"):
        assert generate(client, run=run, length=5)[0]
        assert client.post("/api/attribute", json={"run": run, "text": QUOTED}).status_code == 200
    return client


@pytest.mark.parametrize(("method", "path", "body", "status", "words"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_bad_input_is_a_one_line_json_error_and_the_server_goes_on(
        warm: TestClient, runs: Path, method: str, path: str, body: Any, status: int, words: str) -> None:
    before = snapshot(runs)
    if isinstance(body, bytes):
        response = warm.request(method, path, content=body, headers=JSON)
    else:
        response = warm.request(method, path, json=body) if body is not None else warm.request(method, path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert list(error) == ["error"] and isinstance(error["error"], str) and error["error"]
    assert "\n" not in error["error"] and "Traceback" not in error["error"]
    assert words in error["error"], error["error"]
    assert snapshot(runs) == before  # nothing in the runs directory changed
    texts, _ = generate(warm, prompt="The", length=20, seed=1)  # and a good request after it works
    assert len(texts[0]) == 20
    assert warm.get("/api/health").json()["generations"] == 0
    assert snapshot(runs) == before


# --- what a review found: bodies, hosts, conversations, long runs, changed sources, threads ----------
def test_a_body_over_the_limit_is_refused_as_it_arrives(runs: Path) -> None:
    small = Service(root=runs, limits=Limits(max_prompt_chars=10, max_attribute_chars=10))
    try:
        with TestClient(create_app(small)) as c:
            most = 12 * 10 + (64 << 10)
            body = json.dumps({"run": "tiny", "text": "a" * (most + 1)}).encode()
            for headers in ({"content-type": "application/json"},  # declared length
                            {"content-type": "application/json", "transfer-encoding": "chunked"}):
                chunks = iter([body[:1000], body[1000:]]) if "transfer-encoding" in headers else None
                r = c.post("/api/attribute", content=chunks if chunks is not None else body, headers=headers)
                assert r.status_code == 413 and "larger than this server takes" in r.json()["error"]
            assert c.post("/api/attribute", json={"run": "tiny", "text": "The cat"}).status_code == 200
    finally:
        small.close()


def test_on_a_loopback_address_only_requests_for_it_are_answered(service: Service) -> None:
    with TestClient(create_app(service, allowed_hosts=["localhost", "127.0.0.1"])) as c:
        assert c.get("/api/health").status_code == 400  # Host: testserver, e.g. a rebound DNS name
        assert c.get("/api/health", headers={"host": "127.0.0.1:8000"}).status_code == 200


def test_conversations_that_are_answering_are_never_dropped(runs: Path) -> None:
    from charpoet.web.service import Conversations

    lm = charpoet.load(runs / "tiny")
    kept = Conversations(limit=2, ttl=3600)
    a, b = kept.create("tiny", Conversation(lm)), kept.create("tiny", Conversation(lm))
    kept.get(a).lock.acquire()  # answering
    c = kept.create("tiny", Conversation(lm))  # drops b, the least recently used of the idle ones
    assert kept.get(a) and kept.get(c)
    with pytest.raises(charpoet.CharpoetError, match="no such conversation"):
        kept.get(b)
    kept.get(c).lock.acquire()
    with pytest.raises(Busy, match="all answering"):
        kept.create("tiny", Conversation(lm))


def test_a_chat_refused_for_too_many_streams_keeps_no_conversation(runs: Path) -> None:
    busy = Service(root=runs, limits=Limits(max_streams_per_client=1))
    try:
        with TestClient(create_app(busy)) as c:
            release = busy.slots.acquire(CLIENT)  # this client's one stream is taken
            r = c.post("/api/chat", json={"run": "tiny", "text": "The cat"})
            assert r.status_code == 429 and len(busy.conversations) == 0
            release()
            assert c.post("/api/chat", json={"run": "tiny", "text": "The cat"}).status_code == 200
            assert len(busy.conversations) == 1
    finally:
        busy.close()


def test_a_long_runs_curves_are_thinned_but_keep_every_evaluation(runs: Path, tmp_path: Path) -> None:
    from charpoet.web import service as service_module

    root = tmp_path / "runs"
    shutil.copytree(runs / "tiny", root / "long")
    lines = []
    for step in range(1, 10_001):
        lines.append({"kind": "train", "step": step, "loss": 1.0})
        if step % 1000 == 0:
            lines.append({"kind": "eval", "step": step, "val_loss": 1.5})
    (root / "long" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    records = Service(root=root).runs.metrics("long")
    train = [r["step"] for r in records if r["kind"] == "train"]
    assert len(train) <= service_module.MAX_TRAIN_RECORDS + 1 and train[-1] == 10_000 and train == sorted(train)
    assert [r["step"] for r in records if r["kind"] == "eval"] == list(range(1000, 10_001, 1000))


def test_the_index_is_built_again_when_the_runs_sources_change(runs: Path, tmp_path: Path, monkeypatch) -> None:
    import charpoet.attribution as attribution

    root = tmp_path / "runs"
    shutil.copytree(runs / "tiny", root / "tiny")
    built = []
    real = attribution.index_for_run
    monkeypatch.setattr(attribution, "index_for_run", lambda path: built.append(path) or real(path))
    served = Service(root=root).runs
    first = served.index("tiny")
    assert served.index("tiny") is first and len(built) == 1
    library = root / "tiny" / "sources.json"
    stat = library.stat()
    os.utime(library, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # e.g. --fresh with other texts
    assert served.index("tiny") is not first and len(built) == 2


def test_runs_given_a_run_serve_that_run(runs: Path) -> None:
    one = Service(root=runs / "tiny")
    assert one.runs.single and [r["name"] for r in one.runs.summaries()] == ["tiny"]
    assert one.runs.path("tiny") == (runs / "tiny").resolve()


def test_a_name_with_a_lone_surrogate_is_bad_input(client: TestClient) -> None:
    r = client.post("/api/attribute", content=b'{"run": "\\ud800", "text": "a"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "bad run name" in r.json()["error"]


def test_each_worker_steps_its_stream_on_the_cores_the_workers_leave(runs: Path) -> None:
    from charpoet.stepper import auto_threads
    from charpoet.web.service import _cores

    for workers in (1, _cores()):
        served = Service(root=runs, limits=Limits(workers=workers))
        try:
            lm = served.runs.model("tiny")
            assert served.runs.threads_per_stream == max(1, _cores() // workers)
            assert lm.stepper.threads == min(auto_threads(lm.model.config.rnn_size), _cores() // workers)
        finally:
            served.close()
