"""The page of ``charpoet serve`` in a real browser: Debian's Chromium driven by Playwright.

A live server (uvicorn in a thread) serves a copy of the ``trained_run`` fixture as run "tiny",
with a couple of training samples added. The tests write (and watch the text stream), stop with
Esc, hit an error and recover, chat, and watch training; each saves screenshots to
``tests/artifacts`` at laptop (1280x800) and phone (390x844) sizes.

Everything waits for events in the page (``wait_for_function``, ``expect``), never for a fixed
time. Streams are slowed with Chromium's network throttling, so that a fast machine still shows
text arriving in several pieces and a long generation is still running when Esc is pressed.

Without Playwright or /usr/bin/chromium these tests are skipped, but with ``CI=true`` they fail.
``playwright install`` is never used: its browser downloads are not needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_helpers import live_server

ARTIFACTS = Path(__file__).parent / "artifacts"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 60_000
# lines of the training text (conftest.TINY_LINES), so the samples have copies to highlight
SAMPLE_TEXTS = [
    "ROMEO: what light through yonder window breaks?\nThe cat sat on the mat.\nA dog ran in the fo",
    "The cat sat in the fog.\nJULIET: it is the east, and the sun is here.\nA dog ran on the mat.\n",
]

pytestmark = pytest.mark.slow


# --- fixtures ---------------------------------------------------------------------------------
# ``browser`` (tests/conftest.py): one headless Chromium for the session, shared with test_export_web


@pytest.fixture(scope="session")
def runs_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "runs"
    run = root / "tiny"
    shutil.copytree(trained_run, run)
    now = time.time()
    lines = [json.dumps({"step": 100 * (i + 1), "temperature": t, "text": text, "copy_rate": 0.5, "longest": 44,
                         "time": now - 60 + i}) + "\n"
             for i, (t, text) in enumerate(zip((0.6, 0.8), SAMPLE_TEXTS))]
    (run / "samples.jsonl").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def server(runs_dir: Path) -> Iterator[str]:
    with live_server(runs_dir) as url:
        yield url


def _open(browser: Any, server: str, viewport: dict[str, int], scheme: str = "light") -> Iterator[Any]:
    """A fresh context (no storage shared with other tests) and its page, loaded and ready; after
    the test, no uncaught error may have happened in the page's scripts."""
    mobile = viewport is PHONE
    context = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile, device_scale_factor=1,
                                  color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.wait_for_function("document.querySelector('#run').value === 'tiny' && !document.querySelector('#run').disabled")
    yield page
    context.close()
    assert not errors, f"errors in the page's scripts: {errors}"


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    yield from _open(browser, server, LAPTOP)


@pytest.fixture
def phone(browser: Any, server: str) -> Iterator[Any]:
    yield from _open(browser, server, PHONE)


@pytest.fixture
def dark(browser: Any, server: str) -> Iterator[Any]:
    yield from _open(browser, server, LAPTOP, scheme="dark")


def _throttle(page: Any, bytes_per_second: int) -> None:
    """Slow down what the page receives, so streams take a while whatever the machine's speed."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "uploadThroughput": -1,
                                                  "downloadThroughput": bytes_per_second})


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _settings(page: Any, prompt: str, temperature: str, length: str, seed: str = "") -> None:
    page.fill("#prompt", prompt)
    page.fill("#temperature", temperature)
    page.fill("#length", length)
    page.fill("#seed", seed)


OUTPUT_LENGTH = "document.querySelector('#output').textContent.length"
STATE = "document.querySelector('#write-status').dataset.state"


def _wait_state(page: Any, state: str) -> None:
    page.wait_for_function(f"{STATE} === {json.dumps(state)}")


# --- the tests ------------------------------------------------------------------------------------
def test_write_streams_then_highlights_copies(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#run-info")).to_contain_text("char lstm")
    page.select_option("#run", "tiny")
    _settings(page, "ROMEO: what", "0.2", "300", seed="1")
    _throttle(page, 3_000)  # ~11 kB of token events: about 4 s
    page.click("#write")
    page.wait_for_function(f"{STATE} === 'writing' && {OUTPUT_LENGTH} > 'ROMEO: what'.length")
    first = page.evaluate(OUTPUT_LENGTH)
    page.wait_for_function(f"{STATE} === 'writing' && {OUTPUT_LENGTH} > {first}")
    second = page.evaluate(OUTPUT_LENGTH)
    assert second > first
    expect(page.locator("#stop")).to_be_enabled()
    expect(page.locator("#write")).to_be_disabled()
    _wait_state(page, "done")
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#write")).to_be_enabled()

    output = page.locator("#output")
    assert output.locator(".prompt").inner_text() == "ROMEO: what"
    marks = output.locator("mark.copy")
    assert marks.count() >= 1, page.locator("#output").inner_text()
    legend = page.locator("#legend [data-testid=legend-item]")
    expect(legend.first).to_contain_text("text")  # the run's one source, text.txt
    # the mark has its legend entry's colour, and says where it comes from on hover
    swatch_colour = legend.first.locator(".swatch").evaluate("e => getComputedStyle(e).backgroundColor")
    mark = marks.first
    assert mark.evaluate("e => getComputedStyle(e).backgroundColor") == swatch_colour
    assert mark.evaluate("e => getComputedStyle(e).color") == "rgb(0, 0, 0)"
    mark.hover()
    assert re.fullmatch(r"\[1\] .+ — offset [\d,]+( \(also in .+\))?", mark.get_attribute("title"))
    expect(page.locator("#copy-stats")).to_contain_text("copied")
    expect(page.locator("#copy-stats")).to_contain_text("longest")
    novelty = page.locator("#novelty-chart path.line")
    expect(novelty).to_have_count(1)
    assert novelty.get_attribute("d").count("L") >= 10
    # the text shown is the model's, escaped: no element came from it
    assert output.locator(":scope > :not(.prompt):not(mark)").count() == 0
    _shot(page, "write-laptop")


def test_escape_stops_a_long_generation(page: Any) -> None:
    from playwright.sync_api import expect

    _settings(page, "The cat", "1.0", "5000")
    _throttle(page, 2_000)  # 5000 tokens would take well over a minute
    page.focus("#prompt")
    page.keyboard.press("Enter")  # Enter in the prompt writes
    page.wait_for_function(f"{STATE} === 'writing' && {OUTPUT_LENGTH} > 20")
    page.keyboard.press("Escape")
    _wait_state(page, "stopped")
    expect(page.locator("#write-status")).to_have_text("Stopped.")
    expect(page.locator("#write")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    assert page.evaluate(OUTPUT_LENGTH) < 5000
    expect(page.locator("#error")).to_be_hidden()
    # Shift+Enter is a new line, not a new generation
    page.focus("#prompt")
    page.keyboard.press("Shift+Enter")
    assert page.input_value("#prompt") == "The cat\n"
    assert page.evaluate(STATE) == "stopped"


def test_error_is_shown_and_the_page_recovers(page: Any) -> None:
    from playwright.sync_api import expect

    _settings(page, "The € cat", "0.8", "50")
    page.click("#write")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(page.locator("#error-text")).to_contain_text("€")
    _wait_state(page, "error")
    expect(page.locator("#write")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    _shot(page, "error-laptop")
    page.click("#error-close")
    expect(error).to_be_hidden()
    # a bad number is caught before asking the server
    page.fill("#prompt", "The cat")
    page.fill("#temperature", "")
    page.click("#write")
    expect(page.locator("#error-text")).to_contain_text("Temperature")
    page.keyboard.press("Escape")  # nothing runs: Esc dismisses the error
    expect(error).to_be_hidden()
    page.fill("#temperature", "0.5")
    page.click("#write")
    _wait_state(page, "done")
    expect(error).to_be_hidden()


def test_chat_turns_undo_reset_and_session(page: Any) -> None:
    from playwright.sync_api import expect

    page.focus("#tab-write")
    page.keyboard.press("ArrowRight")  # tabs are reachable by keyboard
    expect(page.locator("#tab-chat")).to_be_focused()
    expect(page.locator("#view-chat")).to_be_visible()
    turns = page.locator("#transcript [data-testid=turn]")
    status = page.locator("#chat-status")

    def say(text: str, count: int) -> None:
        page.fill("#chat-input", text)
        page.press("#chat-input", "Enter")  # Enter sends
        expect(turns).to_have_count(count)
        expect(status).to_have_attribute("data-state", "idle")
        expect(turns.nth(count - 1).locator(".user .text")).to_have_text(text)

    page.fill("#chat-temperature", "0.5")
    say("The cat sat on the mat.", 1)
    say("A dog ran in the fog.", 2)
    assert turns.nth(1).locator(".bot .text").inner_text().strip()
    cid = page.evaluate("sessionStorage.getItem('charpoet.chat.tiny')")
    assert cid
    _shot(page, "chat-laptop")

    page.click("#chat-undo")
    expect(turns).to_have_count(1)
    expect(turns.first.locator(".user .text")).to_have_text("The cat sat on the mat.")
    # the conversation belongs to this tab's session: a reload shows it again
    page.reload()
    expect(turns).to_have_count(1)
    page.click("#chat-reset")
    expect(turns).to_have_count(0)
    expect(page.locator("#chat-empty")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('charpoet.chat.tiny')") == cid

    # an id the server does not know (expired, restarted): a new conversation starts
    page.evaluate("sessionStorage.setItem('charpoet.chat.tiny', 'gone')")
    page.reload()
    expect(turns).to_have_count(0)
    say("The cat sat on the mat.", 1)
    assert page.evaluate("sessionStorage.getItem('charpoet.chat.tiny')") not in (None, "gone", cid)
    expect(page.locator("#error")).to_be_hidden()


def test_training_curves_and_samples(page: Any, runs_dir: Path) -> None:
    from playwright.sync_api import expect

    metrics = runs_dir / "tiny" / "metrics.jsonl"
    os.utime(metrics)  # changed just now: the run counts as training, so the page polls fast
    page.click("#tab-training")
    expect(page.locator("#view-training")).to_be_visible()
    loss = page.locator("#loss-chart path[data-series='training loss']")
    expect(loss).to_have_count(1)
    assert loss.get_attribute("d").count("L") >= 2
    expect(page.locator("#loss-chart .axis-label")).to_have_text(["step", "loss"])
    expect(page.locator("#bpc-chart path[data-series='validation bpc']")).to_have_count(1)
    expect(page.locator("[data-testid=training-badge]")).to_have_text("training")
    samples = page.locator("#samples [data-testid=sample]")
    expect(samples).to_have_count(2)
    expect(samples.first).to_contain_text("step 200")  # newest first
    expect(samples.first.locator("mark.copy").first).to_be_visible()
    assert "offset" in samples.first.locator("mark.copy").first.get_attribute("title")
    _shot(page, "training-laptop")

    # a new record is drawn by the next poll, into the same chart (no flicker: redrawn in place)
    chart = page.locator("#loss-chart").element_handle()
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    last = [r for r in records if r.get("kind") == "train"][-1]
    with metrics.open("a", encoding="utf-8") as f:
        f.write(json.dumps({**last, "step": last["step"] + 1000, "loss": 0.05, "time": time.time()}) + "\n")
    page.wait_for_function("n => document.querySelector('#train-stats').textContent.includes(n)",
                           arg=f"step {last['step'] + 1000:,}")
    assert chart.evaluate("e => e.isConnected")


def test_phone_layout(phone: Any) -> None:
    from playwright.sync_api import expect

    page = phone
    no_sideways_scroll = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    _settings(page, "ROMEO: what", "0.2", "300", seed="1")
    page.click("#write")
    _wait_state(page, "done")
    expect(page.locator("#analysis")).to_be_visible()
    assert page.evaluate(no_sideways_scroll)
    # one column: the settings sit under the prompt, the analysis under the text
    prompt, settings = page.locator("#prompt").bounding_box(), page.locator("#settings").bounding_box()
    assert settings["y"] >= prompt["y"] + prompt["height"]
    _shot(page, "write-phone")
    page.click("#tab-chat")
    page.fill("#chat-input", "The cat sat on the mat.")
    page.click("#chat-send")
    expect(page.locator("#transcript [data-testid=turn]")).to_have_count(1)
    expect(page.locator("#chat-status")).to_have_attribute("data-state", "idle")
    assert page.evaluate(no_sideways_scroll)
    _shot(page, "chat-phone")
    page.click("#tab-training")
    expect(page.locator("#loss-chart path.line").first).to_be_attached()
    expect(page.locator("#samples [data-testid=sample]")).to_have_count(2)
    assert page.evaluate(no_sideways_scroll)
    _shot(page, "training-phone")


def test_dark_theme_keeps_copies_readable(dark: Any) -> None:
    page = dark
    _settings(page, "ROMEO: what", "0.2", "300", seed="1")
    page.click("#write")
    _wait_state(page, "done")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(map(int, re.findall(r"\d+", background)[:3])) < 3 * 64, background  # a dark page
    mark = page.locator("#output mark.copy").first
    assert mark.evaluate("e => getComputedStyle(e).color") == "rgb(0, 0, 0)"  # dark text on the pastel colour
    _shot(page, "write-dark")
