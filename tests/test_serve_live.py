"""The web app on a real socket: uvicorn in a thread, and ``charpoet serve`` as a process.

Streams must reach the client token by token while they are written, stop when their client goes
away, and leave the server answering; the command must start, print its address, refuse what it
cannot serve with one ``error:`` line, and stop cleanly on Ctrl-C. Nothing here depends on the
machine's speed: a test waits for an event (with a generous timeout), never sleeps and looks.
To make "while it is written" certain, some tests serve the run's model through ``Endless``, which
writes the model's text without end: such a stream can only stop because it was stopped.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

import charpoet
from charpoet.web.app import create_app
from charpoet.web.service import Limits, Service
from test_serve_api import sse_events, wait_until

TIMEOUT = 60.0  # seconds: generous, for a loaded machine
PROMPT = "ROMEO:"


class Endless:
    """The run's model, writing its text over and over (the same options each time) until the
    stream is closed; ``closed`` counts the streams that were."""

    def __init__(self, lm: charpoet.LanguageModel):
        self.lm, self.closed, self._lock = lm, 0, threading.Lock()

    def stream(self, prime: str, options: Any) -> Iterator[list[str]]:
        first = self.lm.stream(prime, options)  # checks the prompt and options as the model does

        def endless() -> Iterator[list[str]]:
            try:
                it = first
                while True:
                    yield from it
                    it = self.lm.stream(prime, options)
            finally:
                with self._lock:
                    self.closed += 1

        return endless()


@pytest.fixture(scope="module")
def runs(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-live") / "runs"
    shutil.copytree(trained_run, root / "tiny")
    return root


@pytest.fixture(scope="module")
def lm(runs: Path) -> charpoet.LanguageModel:
    return charpoet.load(runs / "tiny")


@pytest.fixture(scope="module")
def service(runs: Path) -> Iterator[Service]:
    s = Service(root=runs, limits=Limits(max_streams_per_client=16))
    yield s
    s.close()


@pytest.fixture(scope="module")
def url(service: Service) -> Iterator[str]:
    """The address of uvicorn serving ``service`` from a thread, on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "uvicorn has started", TIMEOUT)
        assert server.started
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()


@pytest.fixture
def endless(service: Service, lm: charpoet.LanguageModel, monkeypatch: pytest.MonkeyPatch) -> Endless:
    """Generations of this test write without end."""
    model = Endless(lm)
    monkeypatch.setattr(service.runs, "model", lambda name: model)
    return model


def health(url: str) -> dict[str, Any]:
    response = httpx2.get(f"{url}/api/health", timeout=TIMEOUT)
    assert response.status_code == 200
    return response.json()


def generate_text(url: str, run: str = "tiny", **body: Any) -> str:
    response = httpx2.post(f"{url}/api/generate", json={"run": run, **body}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    events = list(sse_events([response.content]))
    assert events[-1][0] == "done"
    return "".join(d["texts"][0] for e, d in events if e == "token")


# --- streams ------------------------------------------------------------------------------------
def test_tokens_arrive_as_written_and_a_client_that_leaves_stops_its_generation(
        url: str, lm: charpoet.LanguageModel, endless: Endless, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = lm.generate(PROMPT, length=500, seed=5)[0]
    with httpx2.Client(timeout=TIMEOUT) as client:
        with client.stream("POST", f"{url}/api/generate", json={"run": "tiny", "prompt": PROMPT, "length": 500,
                                                                "seed": 5}) as response:
            assert response.status_code == 200
            events, text = sse_events(response.iter_raw()), ""  # kept: closing it would close the response
            while len(text) < 300:
                event, data = next(events)
                assert event == "token" and len(data["texts"]) == 1
                text += data["texts"][0]
            assert text == expected[:len(text)]  # the model's own text, token by token
            assert health(url)["generations"] == 1  # read before the (endless) generation ended
        # the response is closed unread: the server must notice and stop writing
    wait_until(lambda: health(url)["generations"] == 0, "the abandoned generation stops", TIMEOUT)
    assert endless.closed == 1
    monkeypatch.undo()  # the run's own model again
    assert generate_text(url, prompt=PROMPT, length=500, seed=5) == expected  # and the server still serves


def test_health_answers_while_eight_streams_are_written(url: str, endless: Endless,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    started = [threading.Event() for _ in range(8)]
    stop = threading.Event()
    failures: list[BaseException] = []

    def read(i: int) -> None:
        try:
            with httpx2.Client(timeout=TIMEOUT) as client:
                with client.stream("POST", f"{url}/api/generate",
                                   json={"run": "tiny", "prompt": "The", "length": 300, "seed": i,
                                         "temperature": 1.0}) as response:
                    assert response.status_code == 200
                    for _ in sse_events(response.iter_raw()):  # read on, as a browser does
                        started[i].set()
                        if stop.is_set():
                            break
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)
        finally:
            started[i].set()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    try:
        for event in started:
            assert event.wait(TIMEOUT), "a stream never began"
        assert not failures, failures
        assert health(url)["generations"] == 8  # answered while all eight are being written
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    assert not failures, failures
    wait_until(lambda: health(url)["generations"] == 0, "the eight generations stop", TIMEOUT)
    assert endless.closed == 8
    # nor did the server go on writing to the closed connections (asyncio logs each such write)
    assert not [r for r in caplog.records if "socket.send() raised exception" in r.getMessage()]


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET ``target`` written on the wire as given (an HTTP client would tidy ``..`` away)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("ascii"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("target", ["/api/runs/../../etc/metrics", "/api/runs/%2e%2e/metrics",
                                    "/api/runs/tiny/../../../etc/samples", "/api/runs/%2fetc/metrics",
                                    "/api/runs/.%2e/%2e./metrics"])
def test_dot_segments_on_the_wire_are_400(url: str, target: str) -> None:
    status, body = raw_get(url, target)
    assert status == 400, body
    assert list(json.loads(body)) == ["error"]
    assert health(url)["status"] == "ok"


# --- the command ----------------------------------------------------------------------------------
class Serve:
    """``charpoet serve ARGS`` as a process; ``url`` once it has printed its address."""

    def __init__(self, *args: Any):
        self.proc = subprocess.Popen([sys.executable, "-m", "charpoet", "serve", *map(str, args)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def url(self) -> str:
        """The address it printed; every stderr line before it is kept in ``stderr``."""
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"charpoet serve printed no address; stderr so far: {self.stderr}")
            if line is None:
                pytest.fail(f"charpoet serve ended: {self.stderr}")
            self.stderr.append(line)
            if found := re.match(r"charpoet serve: (http://\S+?)/ ", line):
                return found.group(1)

    def stop(self) -> tuple[int, list[str]]:
        """Ctrl-C; its exit status and all it printed on stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(TIMEOUT)
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            self.stderr.append(line)
        return code, self.stderr

    def finish(self) -> tuple[int, list[str]]:
        code = self.proc.wait(TIMEOUT)
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            self.stderr.append(line)
        return code, self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_the_command_serves_a_runs_directory_and_stops_on_ctrl_c(runs: Path, lm: charpoet.LanguageModel) -> None:
    serve = Serve("--runs", runs, "--port", 0)
    try:
        url = serve.url()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0")
        assert [r["name"] for r in httpx2.get(f"{url}/api/runs", timeout=TIMEOUT).json()["runs"]] == ["tiny"]
        assert generate_text(url, prompt=PROMPT, length=60, seed=9) == lm.generate(PROMPT, length=60, seed=9)[0]
        code, stderr = serve.stop()
    finally:
        serve.kill()
    assert code == 0, stderr
    assert stderr[-1] == "charpoet serve: stopped", stderr
    assert not any("Traceback" in line or line.startswith("error:") for line in stderr), stderr


def test_a_host_other_than_loopback_is_warned_about(runs: Path) -> None:
    serve = Serve("--checkpoint-path", runs / "tiny", "--host", "0.0.0.0", "--port", 0)
    try:
        url = serve.url()
        port = url.rsplit(":", 1)[1]
        runs_listed = httpx2.get(f"http://127.0.0.1:{port}/api/runs", timeout=TIMEOUT).json()["runs"]
        assert [r["name"] for r in runs_listed] == ["tiny"]  # one run, by its directory's name
        code, stderr = serve.stop()
    finally:
        serve.kill()
    warnings = [line for line in stderr if line.startswith("warning:")]
    assert len(warnings) == 1 and "reachable from the network" in warnings[0] and port in warnings[0], stderr
    assert code == 0, stderr


def test_what_the_command_cannot_serve_is_one_error_line_and_exit_2(runs: Path) -> None:
    with contextlib.ExitStack() as stack:
        busy = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases = {  # started together: each pays for its start-up at the same time
            f"port {port} on 127.0.0.1 is in use": Serve("--runs", runs, "--port", port),
            "does not exist": Serve("--runs", runs / "nope", "--port", 0),
            "not both": Serve("--runs", runs, "--checkpoint-path", runs / "tiny", "--port", 0),
            "not a charpoet run": Serve("--checkpoint-path", runs, "--port", 0),
        }
        for serve in cases.values():
            stack.callback(serve.kill)
        for words, serve in cases.items():
            code, stderr = serve.finish()
            assert code == 2, (words, stderr)
            assert len(stderr) == 1 and stderr[0].startswith("error: ") and words in stderr[0], stderr
