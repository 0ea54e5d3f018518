"""``charpoet chat``: a dialog with a trained run, each answer shown with its verbatim copies highlighted.

On a terminal: a ``you> `` prompt with readline editing and a history file, answers streamed
as they are written and then re-rendered highlighted. Otherwise (stdin is a pipe or a file)
every non-empty line is a turn or a command; each answer goes to stdout followed by an empty
line, and everything else (command replies, copy summaries) to stderr, one line each:

    printf 'Who is there?\\n/temperature 0.5\\nSpeak.\\n' | charpoet chat --checkpoint-path runs/hamlet
"""

from __future__ import annotations

import errno
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from charpoet.cli import app
from charpoet.cli.attribute import ForceIndex
from charpoet.config import DEVICES
from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CharpoetError, CharpoetWarning, ConfigError

HELP = """\
/temperature [T]      sampling temperature: < 1 safer, > 1 wilder, 0 = greedy (no value: show it)
/top-k [N]            sample only from the N most likely tokens; 0 = off
/top-p [P]            sample from the smallest set of tokens with probability >= P; 1 = off
/length [[MIN] MAX]   answer length in tokens (one value: MAX)
/sentences [N]        end an answer after N sentences (or at a blank line)
/reset                start afresh: the model forgets the whole conversation
/undo                 drop the last exchange: the model forgets it
/save FILE            write the transcript to FILE and a highlighted page to FILE.html
/help                 this list
/quit                 leave (or Ctrl-D); start a line with // to say something beginning with /"""

# How the commands name the options in messages ("/top-p must be in (0, 1], got 2").
COMMAND_NAMES = {"temperature": "/temperature", "top_k": "/top-k", "top_p": "/top-p", "sentences": "/sentences",
                 "min_length": "/length MIN", "max_length": "/length MAX"}
_SETTINGS: dict[str, tuple[str, type]] = {"/temperature": ("temperature", float), "/top-k": ("top_k", int),
                                          "/top-p": ("top_p", float), "/sentences": ("sentences", int)}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` as the characters they name; any other backslash is kept."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)


@app.command()
def chat(
    checkpoint_path: Annotated[str, typer.Option(help="Run directory (or fsspec URL) to talk with.")] = "runs/default",
    temperature: Annotated[float, typer.Option(help="Logits are divided by T: < 1 safer, > 1 wilder; 0 = greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", help="Sample only from the k most likely tokens; 0 = off.")] = 0,
    top_p: Annotated[float, typer.Option(help="Sample from the smallest set of tokens with probability >= p; 1 = off.")] = 1.0,
    min_length: Annotated[int, typer.Option(help="Tokens an answer has before a sentence end or blank line may end it.")] = 1,
    max_length: Annotated[int, typer.Option(help="Tokens after which an answer always ends.")] = 300,
    sentences: Annotated[int, typer.Option(help="Sentence ends (. ! ?) that end an answer; a blank line ends it too.")] = 2,
    stop: Annotated[list[str] | None, typer.Option(help="A string that ends an answer and is cut from it (repeatable; \\n etc. understood).", show_default=False)] = None,
    user_prefix: Annotated[str, typer.Option(help='Written before each of your turns, e.g. "\\nYOU:\\n" (\\n etc. understood).')] = "",
    bot_prefix: Annotated[str, typer.Option(help='Written before each answer, e.g. "\\nHAMLET:\\n" (\\n etc. understood).')] = "",
    seed: Annotated[int | None, typer.Option(help="Random seed for reproducible answers (also after /reset).", show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="best (lowest validation loss) or last.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    highlight: Annotated[bool, typer.Option(help="Highlight verbatim copies of the training sources (on a terminal; a summary line otherwise).")] = True,
    min_quote: Annotated[int, typer.Option(help="Shortest verbatim copy to highlight, in characters.")] = 20,
    force_index: ForceIndex = False,
) -> None:
    """Talk with a trained run: the model answers each line by continuing the conversation."""
    from charpoet.chat import ChatOptions, Conversation
    from charpoet.sample import load

    options = ChatOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, min_length=min_length,
                          max_length=max_length, sentences=sentences, stop=tuple(unescape(s) for s in stop or ()),
                          user_prefix=unescape(user_prefix), bot_prefix=unescape(bot_prefix)).validate()
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
    from charpoet.attribution import check_min_quote

    check_min_quote(min_quote)
    from charpoet.storage import readable_run

    run_path = readable_run(checkpoint_path)  # a remote run is read from a local copy
    session = _Session(Conversation(load(run_path, weights=weights, device=device), options),
                       run_path, checkpoint_path, highlight, min_quote, force_index)
    if highlight:
        session.index()  # built (or read from the run's cache) before the first turn
    if sys.stdin.isatty():
        _interactive(session)
    else:
        _scripted(session)


class _Session:
    """The conversation and how its answers are shown."""

    def __init__(self, conv: Any, run_path: Path, label: str, highlight: bool, min_quote: int,
                 force_index: bool = False):
        from rich.console import Console

        self.conv = conv
        self.run_path = run_path
        self.label = label
        self.highlight = highlight
        self.min_quote = min_quote
        self.force_index = force_index
        self.console = Console(highlight=False)  # soft_wrap would make Live crop long lines
        self._index: Any = None
        self._too_large = False  # the sources are above the index size limit: no highlighting

    def index(self) -> Any:
        """The run's attribution index; None (after one warning) for sources above the size limit."""
        if self._index is None and not self._too_large:
            from charpoet.attribution import IndexTooLargeError, index_for_run

            try:
                self._index = index_for_run(self.run_path, force=self.force_index)
            except IndexTooLargeError as exc:  # the answers matter more than their highlighting
                self._too_large, self.highlight = True, False
                warnings.warn(f"answers are not highlighted: {exc}", CharpoetWarning, stacklevel=2)
        return self._index

    def attribute(self, text: str) -> Any:
        """``text``'s attribution; without spans when there is no index."""
        index = self.index()
        if index is None:
            from charpoet.attribution_types import Attribution

            return Attribution(text, (), (), self.min_quote)
        return index.attribute(text, self.min_quote)

    def answer(self, text: str) -> None:
        """Say ``text`` and show the answer; Ctrl-C drops the exchange."""
        try:
            stream = self.conv.stream(text)  # unknown characters raise here, nothing said
        except CharpoetError as exc:
            say(f"{exc}; not sent")
            return
        before = len(self.conv.turns)
        try:
            if self.highlight and self.console.is_terminal:
                self._live(stream)
            else:
                self._plain(stream)
        except KeyboardInterrupt:
            stream.close()  # an unfinished answer leaves the conversation as before this turn
            if len(self.conv.turns) > before:
                self.conv.undo()  # the answer was complete: Ctrl-C came while it was being highlighted
            sys.stdout.write("\n")
            say("interrupted; the exchange was dropped")

    def _plain(self, stream: Any) -> None:
        out = sys.stdout
        for piece in stream:
            out.write(piece)
            out.flush()
        out.write("\n\n")
        out.flush()
        if self.highlight and self.index() is not None:
            n = len(self.conv.turns)
            from charpoet.render import copy_summary

            say(f"turn {n}: {copy_summary(self.attribute(self.conv.turns[-1].answer))}")

    def _live(self, stream: Any) -> None:
        from rich.live import Live
        from rich.text import Text

        from charpoet.render import to_rich

        text = Text()
        with Live(text, console=self.console, refresh_per_second=12, vertical_overflow="visible") as live:
            for piece in stream:
                text.append(piece)
                live.update(text)
            live.update(to_rich(self.attribute(self.conv.turns[-1].answer)))
        self.console.print()

    def command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        name, *args = line.split()
        name = name.lower()
        if name in ("/quit", "/exit"):
            return False
        if name in _SETTINGS:
            self._set(name, args)
        elif name == "/length":
            self._length(args)
        elif name in ("/reset", "/undo", "/help"):
            if args:
                say(f"{name} takes no arguments")
            elif name == "/reset":
                self.conv.reset()
                say("conversation reset")
            elif name == "/undo":
                say("dropped the last exchange" if self.conv.undo() else "nothing to undo")
            else:
                say(HELP)
        elif name == "/save":
            if args:
                self._save(line.split(None, 1)[1].strip())
            else:
                say("/save needs a file name: /save FILE")
        else:
            say(f"unknown command {name}; /help lists the commands")
        return True

    def _set(self, name: str, args: list[str]) -> None:
        field, kind = _SETTINGS[name]
        if not args:
            say(f"{field.replace('_', '-')} is {getattr(self.conv.options, field):g}")
            return
        if len(args) > 1:
            say(f"{name} takes one value, got {' '.join(args)!r}")
            return
        value = _number(name, args[0], kind)
        if value is not None and self._apply(**{field: value}):
            say(f"{field.replace('_', '-')} set to {value:g}")

    def _length(self, args: list[str]) -> None:
        opts = self.conv.options
        if not args:
            say(f"answers are {opts.min_length} to {opts.max_length} tokens")
            return
        if len(args) > 2:
            say(f"/length takes MAX or MIN MAX, got {' '.join(args)!r}")
            return
        values = [_number("/length", a, int) for a in args]
        if any(v is None for v in values):
            return
        if len(values) == 1:  # a new maximum; the minimum follows it down if needed
            changes = {"max_length": values[0], "min_length": min(opts.min_length, max(values[0], 0))}
        else:
            changes = {"min_length": values[0], "max_length": values[1]}
        if self._apply(**changes):
            say(f"answers are {self.conv.options.min_length} to {self.conv.options.max_length} tokens")

    def _apply(self, **changes: Any) -> bool:
        try:
            self.conv.options = replace(self.conv.options, **changes).validate(COMMAND_NAMES)
        except ConfigError as exc:
            say(str(exc))
            return False
        return True

    def _save(self, name: str) -> None:
        if not self.conv.turns:
            say("nothing to save yet")
            return
        try:
            path = Path(name).expanduser()
            if not path.name or path.name in (".", ".."):
                raise ValueError("give a file name")
            if path.suffix.lower() in (".html", ".htm"):  # the page as named, the transcript beside it
                text_path, html_path = path.with_suffix(".txt"), path
            else:  # notes.txt -> notes.html, notes -> notes.html
                text_path, html_path = path, path.with_suffix(".html")
            if not path.parent.is_dir():  # a typo in the folder is an error, not a new folder
                raise FileNotFoundError(errno.ENOENT, "No such directory", str(path.parent))
            page = _page(self.conv.turns, self.attribute, f"charpoet chat with {self.label}")
            atomic_write_bytes(text_path, self.conv.transcript.encode("utf-8"))
            atomic_write_bytes(html_path, page.encode("utf-8"))
        except OSError as exc:
            say(f"cannot save: {exc.strerror or exc}: {exc.filename or name}")
            return
        except (ValueError, RuntimeError, CharpoetError) as exc:
            say(f"cannot save to {name!r}: {exc}")
            return
        say(f"saved {len(self.conv.turns)} exchanges to {text_path} and {html_path}")


def say(message: str) -> None:
    """A message for the user: stderr, so that stdout holds only the answers."""
    print(message, file=sys.stderr, flush=True)


def _number(name: str, text: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(text)
    except ValueError:
        say(f"{name} needs {'a whole number' if kind is int else 'a number'}, got {text!r}")
        return None


def _page(turns: list[Any], attribute: Callable[[str], Any], title: str) -> str:
    """A standalone HTML page: each user turn, then its answer highlighted (``attribute``)."""
    import html

    from charpoet.render import PAGE_CSS, to_html

    blocks = [
        f'<p class="charpoet-user"><b>you&gt;</b> {html.escape(t.user)}</p>\n'
        + to_html(attribute(t.answer), standalone=False)
        for t in turns
    ]
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{PAGE_CSS}</style>\n</head>\n"
        "<body>\n" + "\n".join(blocks) + "\n</body>\n</html>\n"
    )


def _handle(session: _Session, line: str) -> bool:
    """One line of input: a turn or a command; False means quit."""
    if not line.strip():
        return True
    if line.startswith("/") and not line.startswith("//"):
        return session.command(line)
    session.answer(line[1:] if line.startswith("//") else line)
    return True


def _scripted(session: _Session) -> None:
    import io

    lines = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace") if hasattr(sys.stdin, "buffer") else sys.stdin
    for line in lines:
        if not _handle(session, line.rstrip("\r\n")):
            break


def _interactive(session: _Session) -> None:
    from charpoet.corpus.cache import charpoet_home

    history = charpoet_home() / "chat_history"
    try:
        import readline  # line editing and history for input()
    except ImportError:
        readline = None  # type: ignore[assignment]
    if readline is not None:
        try:
            readline.read_history_file(history)
        except OSError:
            pass  # none yet
        readline.set_history_length(1000)
    say(f"chatting with {session.label}; /help lists the commands, /quit or Ctrl-D leaves")
    try:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                sys.stdout.write("\n")
                break
            except KeyboardInterrupt:  # as in Python's prompt: drop the line, ask again
                sys.stdout.write("\n")
                continue
            if not _handle(session, line):
                break
    finally:
        if readline is not None:
            try:
                history.parent.mkdir(parents=True, exist_ok=True)
                readline.write_history_file(history)
            except OSError:
                pass
