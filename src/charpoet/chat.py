"""A dialog with a trained run: the user's turns and the model's answers share one hidden state.

    conv = Conversation(charpoet.load("runs/hamlet"),
                        ChatOptions(user_prefix="\\nYOU:\\n", bot_prefix="\\nHAMLET:\\n", seed=1))
    conv.say("Who's there?")            # the answer, as text
    for piece in conv.stream("Speak."):  # the same, piece by piece
        print(piece, end="")
    conv.undo()                          # forget the last exchange
    conv.reset()                         # forget everything

What the model reads (``conv.transcript``) is the turns and answers in order::

    [\\n] user_prefix + text + \\n + bot_prefix   answer tokens ...   [\\n] user_prefix + ...
    ^ only when the transcript does not already end with a newline

Each turn is fed once, from the state the previous answer left; answer tokens are fed one by
one as they are sampled. Nothing is ever re-encoded, so a turn costs its own length in steps.
An answer ends (``stop_reason``) at a stop string, which is cut from the answer and from the
model's memory; at ``max_length`` tokens; or, once ``min_length`` tokens are out, after
``sentences`` sentence ends or at a blank line. The answer is the text up to there, stripped.

Before each turn the conversation keeps a snapshot of everything that decides its future (the
hidden state, the random generator's state and the transcript length), so ``undo`` returns
exactly to the moment before the last exchange: replaying the same turns in a fresh
conversation with the same seed gives the same answers.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from charpoet.errors import ConfigError, TokenizerError
from charpoet.sample import LanguageModel
from charpoet.sampling import SamplingOptions, option_namer
from charpoet.stepper import State

__all__ = ["ChatOptions", "Conversation", "Turn", "stop_reason"]

# Why an answer ended (Turn.stop, stop_reason).
STOP_STRING, MAX_LENGTH, SENTENCES, BLANK_LINE = "stop", "max_length", "sentences", "blank_line"

# A sentence end: ., ! or ? (repeated: "?!", "..."), closing quotes or brackets, then whitespace.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s")
_ENDS_SENTENCE = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s\Z")
_ENDS_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\Z")


@dataclass(frozen=True, kw_only=True)
class ChatOptions(SamplingOptions):
    """``SamplingOptions`` (temperature, top_k, top_p, seed: at creation and on reset) plus when an
    answer ends and what frames each turn."""

    min_length: int = 1  # tokens before a sentence end or blank line may end an answer
    max_length: int = 300  # tokens; an answer always ends here
    sentences: int = 2  # sentence ends that finish an answer
    stop: tuple[str, ...] = ()  # strings that end an answer (not part of it)
    user_prefix: str = ""  # written before each user turn
    bot_prefix: str = ""  # written after each user turn, before the answer

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)  # one string, or a list
        object.__setattr__(self, "stop", stop)

    def validate(self, names: Mapping[str, str] | None = None) -> ChatOptions:
        """Check every value; messages name the option as ``names[field]`` (default ``--kebab-case``)."""
        super().validate(names)
        name = option_namer(names)
        if self.min_length < 0:
            raise ConfigError(f"{name('min_length')} must be >= 0, got {self.min_length}")
        if self.max_length < 1:
            raise ConfigError(f"{name('max_length')} must be >= 1, got {self.max_length}")
        if self.min_length > self.max_length:
            raise ConfigError(f"{name('min_length')} must be <= {name('max_length')}, "
                              f"got {self.min_length} > {self.max_length}")
        if self.sentences < 1:
            raise ConfigError(f"{name('sentences')} must be >= 1, got {self.sentences}")
        if any(not s for s in self.stop):
            raise ConfigError(f"{name('stop')} must not be empty")
        return self


def stop_reason(text: str, tokens: int, options: ChatOptions) -> tuple[str, int] | None:
    """Whether an answer of ``tokens`` tokens reading ``text`` is finished.

    Returns ``(reason, end)``, the answer being ``text[:end]``, or None to go on. Called after
    every token, so a natural end is only recognised as it is written: the whitespace after
    the ``sentences``-th sentence end, or the second newline of a blank line (after some text).
    """
    found = [i for i in (text.find(s) for s in options.stop) if i >= 0]
    if found:
        return STOP_STRING, min(found)
    if tokens >= options.max_length:
        return MAX_LENGTH, len(text)
    if tokens < options.min_length or not text.strip():
        return None
    if _ENDS_BLANK_LINE.search(text):
        return BLANK_LINE, len(text)
    if _ENDS_SENTENCE.search(text) and len(_SENTENCE_END.findall(text)) >= options.sentences:
        return SENTENCES, len(text)
    return None


def _shown(raw: str, stop: tuple[str, ...]) -> str:
    """The part of a growing answer that is certain to be in the final one.

    Held back: leading and trailing whitespace (the answer is stripped) and a tail that
    could be the beginning of a stop string.
    """
    text = raw.lstrip()
    keep = len(text)
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                keep = min(keep, len(text) - k)
                break
    return text[:keep].rstrip()


class Turn(NamedTuple):
    user: str  # what the user said (without prefixes)
    answer: str  # the model's answer, stripped, without any stop string
    stop: str  # why the answer ended: stop, max_length, sentences or blank_line


@dataclass(frozen=True)
class _Snapshot:
    state: State | None  # each (L, 1, H); the stepper never changes a state in place
    rng: dict[str, Any]  # the sampler's generator state
    chunks: int  # pieces of transcript


class Conversation:
    """A dialog with ``lm``; see the module docstring for what the model reads."""

    def __init__(self, lm: LanguageModel, options: ChatOptions | None = None):
        self.lm = lm
        self._sampler = lm.sampler(options or ChatOptions())  # validates them
        self.options = self._sampler.options
        self.reset()

    @property
    def options(self) -> ChatOptions:
        """The options for the next answers; assign a new ``ChatOptions`` (validated) to change them."""
        return self._options

    @options.setter
    def options(self, value: ChatOptions) -> None:
        value.validate()
        for name in ("user_prefix", "bot_prefix"):
            try:
                self.lm.tokenizer.encode(getattr(value, name))
            except TokenizerError as exc:
                raise TokenizerError(f"--{name.replace('_', '-')}: {exc}") from None
        self._options = self._sampler.options = value

    def configure(self, **changes: Any) -> ChatOptions:
        """Change some options for the next answers (``seed`` takes effect on ``reset``)."""
        self.options = replace(self._options, **changes)
        return self._options

    @property
    def turns(self) -> list[Turn]:
        return list(self._turns)

    @property
    def transcript(self) -> str:
        """Everything the model has read, turns and answers, in order."""
        return "".join(self._chunks)

    def reset(self) -> None:
        """Forget everything: the same as a new conversation with the current options."""
        self._state: State | None = None  # None = zeros
        self._chunks: list[str] = []
        self._turns: list[Turn] = []
        self._snapshots: list[_Snapshot] = []
        self._sampler.reseed(self._options.seed)

    def undo(self) -> bool:
        """Forget the last exchange, restoring the state before it; False if there is none."""
        if not self._snapshots:
            return False
        snap = self._snapshots.pop()
        self._turns.pop()
        self._state = snap.state
        self._sampler.set_state(snap.rng)
        del self._chunks[snap.chunks:]
        return True

    def say(self, text: str) -> str:
        """Feed a user turn and return the model's answer."""
        for _ in self.stream(text):
            pass
        return self._turns[-1].answer

    def stream(self, text: str) -> Iterator[str]:
        """Feed a user turn and yield the answer piece by piece as it is written.

        The pieces join to the answer. Unknown characters raise ``TokenizerError`` at once,
        leaving the conversation as it was. The exchange is recorded when the answer is
        complete; an iterator closed before that leaves the conversation unchanged.
        """
        sep = "\n" if self._chunks and not self.transcript.endswith("\n") else ""
        fed = f"{sep}{self._options.user_prefix}{text}\n{self._options.bot_prefix}"
        ids = self.lm.encode_prime(fed)  # (T,)
        return self._answer(text, fed, ids, self._options)

    def _answer(self, user: str, fed: str, ids: Any, opts: ChatOptions) -> Iterator[str]:
        sampler, stepper, token_text = self._sampler, self.lm.stepper, self.lm.tokenizer.token_text
        before = _Snapshot(self._state, sampler.get_state(), len(self._chunks))
        recorded = False
        try:
            logits, state = stepper.feed(ids, self._state)  # the turn, once: (1, V)
            # (state, length of raw) before each of the last tokens, to cut a stop string back out
            recent: deque[tuple[Any, int]] = deque(maxlen=max((len(s) for s in opts.stop), default=0) + 1)
            raw, tokens, shown = "", 0, 0
            while True:
                token = sampler.pick(logits)  # (1,)
                recent.append((state, len(raw)))
                raw += token_text(int(token[0]))
                logits, state = stepper.step(token, state)
                tokens += 1
                found = stop_reason(raw, tokens, opts)
                if found is not None:
                    break
                visible = _shown(raw, opts.stop)
                if len(visible) > shown:
                    yield visible[shown:]
                    shown = len(visible)
            reason, end = found
            answer = raw[:end].strip()
            if reason == STOP_STRING:  # the model forgets the stop string: back to the token where it began
                for old_state, length in reversed(recent):
                    if length <= end:
                        state, raw = old_state, raw[:length]
                        answer = raw.strip()  # a word token holding the stop's start goes too
                        break
            self._state = state
            self._chunks += [fed, raw]
            self._snapshots.append(before)
            self._turns.append(Turn(user, answer, reason))
            recorded = True
            if len(answer) > shown:
                yield answer[shown:]
        finally:
            if not recorded:
                sampler.set_state(before.rng)
