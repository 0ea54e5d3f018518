"""charpoet.notebook: the live training display driven by real TrainEvents, with IPython's display
captured; its plain-print fallback; plot_history; the reprs of a model, a run and a run list."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import charpoet
import charpoet.notebook as nb
from charpoet.errors import ConfigError
from charpoet.runs import RunList, list_runs
from charpoet.train import TrainEvent

PNG = b"\x89PNG\r\n\x1a\n"
AREAS = ("header", "progress", "stats", "status", "plot")  # the order NotebookDisplay opens them in


class FakeHandle:
    """A display handle that records what was shown in it, first display and updates alike."""

    def __init__(self, obj: Any, display_id: str | None):
        self.display_id = display_id
        self.shown = [obj]

    def update(self, obj: Any) -> None:
        self.shown.append(obj)


class Screen:
    """Stands in for ``IPython.display.display``: every call is one output, in order."""

    def __init__(self) -> None:
        self.outputs: list[FakeHandle] = []

    def display(self, obj: Any, display_id: Any = None, **kwargs: Any) -> FakeHandle | None:
        handle = FakeHandle(obj, f"id-{len(self.outputs)}" if display_id else None)
        self.outputs.append(handle)
        return handle if display_id else None

    def area(self, name: str) -> FakeHandle:
        handles = [h for h in self.outputs if h.display_id is not None]
        assert len(handles) == len(AREAS) and len({h.display_id for h in handles}) == len(AREAS)
        return handles[AREAS.index(name)]

    def appended(self) -> list[str]:
        """The HTML of the outputs displayed without an id (the samples)."""
        return [h.shown[0]._repr_html_() for h in self.outputs if h.display_id is None]


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Screen:
    ipd = pytest.importorskip("IPython.display")
    found = Screen()
    monkeypatch.setattr(ipd, "display", found.display)
    return found


def html_of(obj: Any) -> str:
    assert isinstance(obj, nb.Markup), obj
    assert "<" not in repr(obj)  # plain text for frontends that show no HTML
    return obj._repr_html_()


def record(tiny_corpus: Path, tiny_config: Any, tmp_path: Path, steps: int = 30) -> list[TrainEvent]:
    """The events of a short real training: a step event every step, evaluations every 15 steps."""
    events: list[TrainEvent] = []
    charpoet.train(tiny_config(tiny_corpus, stats_every="15steps"), tmp_path / "recorded", on_event=events.append,
                   stop_after_steps=steps, log_every=1)
    return events


def test_notebook_train_shows_progress_plot_samples_and_end(tiny_corpus: Path, tiny_config: Any, tmp_path: Path,
                                                            screen: Screen) -> None:
    from IPython.display import Image

    config = tiny_config(tiny_corpus, num_epochs=3.0, stats_every="20steps", sample_every="40steps",
                         sample_below_loss=10.0, sample_temperatures=[0.5], sample_length=300)
    events: list[TrainEvent] = []
    display = nb.NotebookDisplay(notebook=True, progress_every=0.0, plot_every=0.0)
    result = nb.train(config, tmp_path / "run", display=display, on_event=events.append)
    assert result.stop_reason == "epochs" and not result.interrupted
    steps = [e for e in events if e.kind == "step"]
    evals = [e for e in events if e.kind == "eval"]
    assert steps and evals and [e.kind for e in events][-1] == "end"

    header = html_of(screen.area("header").shown[-1])
    assert header.startswith("<b>training ") and "parameters" in header
    assert "LSTM 2×32" in header and "corpus corpus" in header and "cpu" in header

    progress = [html_of(o) for o in screen.area("progress").shown]
    assert len(progress) > len(steps)  # every step, in place (one handle, one display id)
    assert "<progress" in progress[-1] and 'value="1.0000"' in progress[-1] and "100.0%" in progress[-1]
    assert f"step {result.step:,}" in progress[-1]
    assert any("chars/s" in p and "loss " in p for p in progress)

    stats = html_of(screen.area("stats").shown[-1])
    assert "bpc" in stats and "acc" in stats and "yp:" in stats

    images = [o for o in screen.area("plot").shown if isinstance(o, Image)]
    assert len(images) >= len(evals) and all(o.data.startswith(PNG) for o in images)

    samples = screen.appended()
    assert len(samples) == len([e for e in events if e.kind == "sample"]) >= 2
    assert all("samples at step" in s and "T=0.5" in s and "copied, longest " in s for s in samples)
    assert any('<mark class="src-' in s for s in samples)  # highlighted once the model copies the corpus
    assert not any("<html" in s or "<body" in s for s in samples)  # fragments, not pages

    status = html_of(screen.area("status").shown[-1])
    assert f"stopped at step {result.step:,}: all epochs done" in status and "again" not in status
    assert (tmp_path / "run" / "loss.png").read_bytes().startswith(PNG)
    assert (tmp_path / "run" / "samples.jsonl").is_file() and (tmp_path / "run" / "train.log").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_interrupted_run_says_how_to_continue_and_continues(tiny_corpus: Path, tiny_config: Any, tmp_path: Path,
                                                            screen: Screen) -> None:
    config = tiny_config(tiny_corpus, stats_every="10steps")

    def interrupt(event: TrainEvent) -> None:  # as the kernel's Interrupt button does
        if event.kind == "step" and event.step == 10:
            os.kill(os.getpid(), signal.SIGINT)

    first = nb.NotebookDisplay(notebook=True, plot_every=0.0)
    result = nb.train(config, tmp_path / "run", display=first, on_event=interrupt)
    assert result.interrupted and result.step == 10
    status = html_of(screen.area("status").shown[-1])
    assert "interrupted" in status and "run the cell again to continue" in status
    progress = html_of(screen.area("progress").shown[-1])
    assert "step 10" in progress and "100.0%" not in progress

    screen.outputs.clear()
    again = nb.NotebookDisplay(notebook=True, plot_every=0.0)
    result = nb.train(config, tmp_path / "run", display=again, stop_after_steps=10)
    assert result.step == 20 and result.stop_reason == "steps"
    assert "continuing from step 10" in html_of(screen.area("header").shown[-1])
    assert again.val_points[0][0] == 10  # the curve goes on from the run's history
    assert screen.area("plot").shown[1].data.startswith(PNG)  # drawn at the start, from that history
    assert "run the cell again to continue" in html_of(screen.area("status").shown[-1])


def test_redraws_are_throttled(tiny_corpus: Path, tiny_config: Any, tmp_path: Path, screen: Screen) -> None:
    from IPython.display import Image

    events = record(tiny_corpus, tiny_config, tmp_path)
    display = nb.NotebookDisplay(notebook=True, progress_every=3600.0, plot_every=3600.0)
    for event in events:
        display(event)
    steps = [e for e in events if e.kind == "step"]
    progress = screen.area("progress").shown
    assert len(steps) == 30 and len(progress) < 10
    assert f"step {events[-1].step}" in html_of(progress[-1])  # the end is always drawn
    plots = [o for o in screen.area("plot").shown if isinstance(o, Image)]
    assert len(plots) == 2  # the first evaluation, then what was held back, at the end


def test_plain_prints_without_ipython(tiny_corpus: Path, tiny_config: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    events = record(tiny_corpus, tiny_config, tmp_path)
    monkeypatch.setitem(sys.modules, "IPython", None)  # import IPython fails
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    assert not nb.in_notebook()
    with pytest.raises(ConfigError, match="needs IPython"):
        nb.NotebookDisplay(notebook=True)
    display = nb.NotebookDisplay(print_every=0.0)
    assert not display.notebook
    for event in events:
        display(event)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("training ") and "LSTM 2×32" in lines[0]
    assert any(re.match(r"step \d+ epoch [\d.]+ loss [\d.]+ [\d,]+ chars/s", line) for line in lines)
    assert any("bpc" in line for line in lines)
    assert lines[-1] == f"stopped at step {events[-1].step}: step limit of this session reached; run it again to continue"


def test_outside_a_kernel_it_prints(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("IPython")
    assert not nb.in_notebook()  # IPython is installed, but no kernel runs this
    display = nb.NotebookDisplay()
    display(TrainEvent("snapshot", 40, 1.0, 0.5))
    assert capsys.readouterr().out == "snapshot saved at step 40\n"


def test_plot_history(trained_run: Path) -> None:
    from matplotlib.figure import Figure

    fig = nb.plot_history(trained_run)
    assert isinstance(fig, Figure) and fig._repr_png_().startswith(PNG)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert len(line.get_xdata()) >= 1 and line.get_label() == trained_run.name
    both = nb.plot_history([trained_run, *list_runs(trained_run.parent)], "val_loss", x="elapsed")
    assert [line.get_label() for line in both.axes[0].get_lines()] == [str(trained_run)] * 2  # same name: paths
    with pytest.raises(ConfigError, match="try one of"):
        nb.plot_history(trained_run, "no_such_metric")
    with pytest.raises(ConfigError, match="not a run directory"):
        nb.plot_history(trained_run.parent / "missing")


def test_model_repr(trained_run: Path) -> None:
    lm = charpoet.load(trained_run)
    text = repr(lm)
    assert re.fullmatch(r"LanguageModel\(char LSTM 2×32, emb 16, [\d,]+ parameters, vocab \d+; trained [\d,]+ steps "
                        r"on text; best val loss [\d.]+ \([\d.]+ bpc\); .+\)", text), text
    assert text.endswith(f"; {trained_run})")
    page = lm._repr_html_()
    assert page.startswith("<table") and "char LSTM 2×32, emb 16" in page and "best val loss" in page
    last = charpoet.load(trained_run, "last")
    assert "trained " in repr(last) and "best val loss" not in repr(last)
    live = charpoet.LanguageModel(lm.model, lm.tokenizer, lm.config, meta={})
    assert repr(live).endswith("trained steps unknown on an unknown corpus; val loss unknown; not loaded from a run)")


def test_run_list_repr(trained_run: Path, tmp_path: Path) -> None:
    runs = charpoet.list_runs(trained_run.parent)
    assert isinstance(runs, RunList) and isinstance(runs, list) and runs == [runs[0]]
    page = runs._repr_html_()
    assert page.startswith("<table") and f"<td style=\"text-align:left\">{trained_run.name}</td>" in page
    assert "char lstm 2x32 emb16" in page and "val loss" in page and "bpc" in page
    summary = runs[0]
    assert isinstance(summary, charpoet.RunSummary)
    assert re.fullmatch(rf"RunSummary\('{trained_run.name}': text, char lstm 2x32 emb16, [\d,]+ steps, best val loss "
                        r"[\d.]+ \([\d.]+ bpc\), updated [\d-]+ [\d:]+\)", repr(summary)), repr(summary)
    assert summary._repr_html_().count("<tr>") == 2
    assert "no runs in" in list_runs(tmp_path)._repr_html_()
