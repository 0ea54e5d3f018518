"""The dialog: Conversation against a slow re-reading reference, stop rules, and ``charpoet chat`` scripted."""

from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from charpoet.chat import ChatOptions, Conversation, _shown, stop_reason
from charpoet.cli import app
from charpoet.errors import CharpoetWarning, ConfigError, TokenizerError
from charpoet.sample import load
from charpoet.train import train


@pytest.fixture(scope="module")
def run(trained_run):
    return trained_run


@pytest.fixture(scope="module")
def lm(run):
    return load(run)


SAMPLING = ChatOptions(temperature=1.0, seed=5, max_length=60)
TURNS = ["The cat sat", "ROMEO: what light", "", "A dog ran in the"]


def converse(lm, turns, options=SAMPLING):
    conv = Conversation(lm, options)
    return conv, [conv.say(t) for t in turns]


@torch.no_grad()
def reread(lm, turns, options):
    """Slow, obviously correct: the whole transcript is read from scratch for every token (char runs)."""
    sampler = lm.sampler(options)  # one uniform number per token, as in the conversation
    transcript, answers = "", []
    for user in turns:
        transcript += ("\n" if transcript and not transcript.endswith("\n") else "")
        transcript += options.user_prefix + user + "\n" + options.bot_prefix
        raw = ""
        while (found := stop_reason(raw, len(raw), options)) is None:
            logits, _ = lm.model(torch.as_tensor(lm.tokenizer.encode(transcript + raw))[None])  # (1, T, V)
            raw += lm.tokenizer.token_text(int(sampler.pick(logits[:, -1].numpy())[0]))
        reason, end = found
        answers.append(raw[:end].strip())
        transcript += raw[:end] if reason == "stop" else raw
    return answers, transcript


# --- the stop rules ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, tokens, options, expected", [
    ("Hello there. ", 13, ChatOptions(), None),  # one sentence of two
    ("Hello. Bye. ", 12, ChatOptions(), ("sentences", 12)),
    ("Hello. Bye.", 11, ChatOptions(), None),  # a sentence ends at the whitespace after it
    ("Why?! Because.\n", 15, ChatOptions(), ("sentences", 15)),
    ('He said "go." ', 14, ChatOptions(sentences=1), ("sentences", 14)),
    ("(As he said.) ", 14, ChatOptions(sentences=1), ("sentences", 14)),
    ("Hello. Bye. ", 12, ChatOptions(min_length=20), None),  # too short to end
    ("Hello. Bye. Again. ", 25, ChatOptions(min_length=20), ("sentences", 19)),
    ("Hello\n\n", 7, ChatOptions(), ("blank_line", 7)),
    ("Hello\n \t\n", 9, ChatOptions(), ("blank_line", 9)),
    ("\n\n", 2, ChatOptions(), None),  # nothing written yet
    ("Hello\n\n", 7, ChatOptions(min_length=10), None),
    ("Hello\nthere\n", 12, ChatOptions(), None),
    ("abc", 300, ChatOptions(), ("max_length", 3)),
    ("abc", 5, ChatOptions(min_length=5, max_length=5), ("max_length", 3)),
    ("abc", 4, ChatOptions(min_length=5, max_length=5), None),
    ("so YOU:", 7, ChatOptions(stop=("YOU:",)), ("stop", 3)),
    ("xYOU:", 300, ChatOptions(stop=("YOU:",)), ("stop", 1)),  # a stop string beats the length
    ("YOU:", 4, ChatOptions(min_length=50, stop=("YOU:",)), ("stop", 0)),  # and needs no minimum
    ("a. b. THE END", 13, ChatOptions(stop=("END", "THE")), ("stop", 6)),  # the first of several
])
def test_stop_reason(text, tokens, options, expected):
    assert stop_reason(text, tokens, options) == expected


def test_streamed_text_holds_back_what_may_still_go():
    assert _shown("\n  Hello wor", ()) == "Hello wor"
    assert _shown("Hello \n", ()) == "Hello"  # trailing whitespace, stripped at the end
    assert _shown("Hi\nYO", ("\nYOU:",)) == "Hi"  # maybe the start of a stop string
    assert _shown("Hi\nYOX", ("\nYOU:",)) == "Hi\nYOX"
    assert _shown("it is th", ("the",)) == "it is"


# --- the conversation --------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    SAMPLING,
    replace(SAMPLING, user_prefix="\nROMEO:\n", bot_prefix="JULIET:", stop=("east",), sentences=1, seed=2),
])
def test_answers_match_rereading_the_whole_transcript(lm, options):
    conv, answers = converse(lm, TURNS, options)
    assert (answers, conv.transcript) == reread(lm, TURNS, options)
    assert [t.user for t in conv.turns] == TURNS and [t.answer for t in conv.turns] == answers


def test_answers_depend_on_earlier_turns(lm):
    answers = {converse(lm, [first, "ROMEO:"])[1][-1]
               for first in ["The cat sat on the mat.", "A dog ran in the fog.", "JULIET: it is", ""]}
    assert len(answers) > 1
    assert converse(lm, ["A dog", "ROMEO:"])[1] == converse(lm, ["A dog", "ROMEO:"])[1]  # and on nothing else


def test_undo_restores_the_state_before_the_last_exchange(lm):
    conv, _ = converse(lm, TURNS[:3])
    assert conv.undo() is True
    fresh, _ = converse(lm, TURNS[:2])
    assert conv.turns == fresh.turns and conv.transcript == fresh.transcript
    assert conv._sampler.get_state() == fresh._sampler.get_state()
    assert conv.say(TURNS[3]) == fresh.say(TURNS[3])
    assert conv.undo() and conv.undo() and conv.undo()
    assert conv.undo() is False and conv.turns == [] and conv.transcript == ""
    assert conv.say(TURNS[0]) == converse(lm, TURNS[:1])[1][0]


def test_reset_is_a_fresh_conversation(lm):
    conv, first = converse(lm, TURNS[:2])
    conv.reset()
    assert conv.turns == [] and conv.transcript == ""
    assert [conv.say(t) for t in TURNS[:2]] == first
    unseeded = Conversation(lm, replace(SAMPLING, seed=None))
    unseeded.say("The")
    unseeded.reset()
    assert unseeded.turns == []


def test_stream_pieces_join_to_the_answer_and_an_abandoned_answer_changes_nothing(lm):
    options = replace(SAMPLING, stop=("the",), bot_prefix="\n")
    conv = Conversation(lm, options)
    for turn in TURNS:
        pieces = list(conv.stream(turn))
        assert "".join(pieces) == conv.turns[-1].answer and "the" not in conv.turns[-1].answer
    partial = conv.stream("JULIET:")
    next(partial)
    partial.close()
    assert len(conv.turns) == len(TURNS)
    _, answers = converse(lm, [*TURNS, "A dog"], options)
    assert conv.say("A dog") == answers[-1]


def test_unknown_characters_change_nothing(lm):
    conv, _ = converse(lm, TURNS[:1])
    with pytest.raises(TokenizerError, match="'Z'"):
        conv.stream("Zebra")
    assert len(conv.turns) == 1
    assert conv.say(TURNS[1]) == converse(lm, TURNS[:2])[1][1]


def test_stop_conditions_hold_in_a_conversation(lm):
    conv = Conversation(lm, ChatOptions(max_length=5, temperature=1.0, seed=1))
    for turn in TURNS:
        assert len(conv.say(turn)) <= 5
    assert {t.stop for t in conv.turns} <= {"max_length", "blank_line", "sentences"}
    conv = Conversation(lm, ChatOptions(temperature=0, sentences=1, max_length=200))
    answer = conv.say("ROMEO:")
    assert conv.turns[-1].stop == "sentences" and answer[-1] in ".?!" and sum(answer.count(c) for c in ".?!") == 1
    conv = Conversation(lm, ChatOptions(temperature=0, sentences=1, min_length=70, max_length=200))
    conv.say("ROMEO:")
    assert len(conv.transcript) - len("ROMEO:\n") >= 70
    conv = Conversation(lm, ChatOptions(temperature=0, stop=("light",), bot_prefix="\nROMEO:"))
    assert conv.say("The cat sat on the mat.") == "what"  # greedy: "ROMEO: what light ..."
    assert conv.turns[-1].stop == "stop" and conv.transcript.endswith("\nROMEO: what ")


def test_options_are_checked(lm):
    for bad, flag in [({"temperature": -1}, "--temperature"), ({"top_k": -1}, "--top-k"), ({"top_p": 2}, "--top-p"),
                      ({"max_length": 0}, "--max-length"), ({"min_length": 9, "max_length": 5}, "--min-length"),
                      ({"sentences": 0}, "--sentences"), ({"stop": [""]}, "--stop")]:
        with pytest.raises(ConfigError, match=flag):
            ChatOptions(**bad).validate()
    with pytest.raises(ConfigError, match=r"^/top-p must be in \(0, 1\], got 2$"):
        ChatOptions(top_p=2).validate({"top_p": "/top-p"})
    assert ChatOptions(stop=["x"]).stop == ("x",)
    conv = Conversation(lm, SAMPLING)
    assert conv.configure(temperature=0.5).temperature == 0.5
    with pytest.raises(ConfigError, match="--top-k"):
        conv.configure(top_k=-1)
    with pytest.raises(TokenizerError, match="--user-prefix.*'Z'"):
        conv.configure(user_prefix="Zed:")
    assert conv.options == replace(SAMPLING, temperature=0.5)


def test_word_runs_chat_without_unk(tiny_corpus, tiny_config, tmp_path):
    config = tiny_config(tiny_corpus, num_epochs=1.0)
    config = replace(config, data=replace(config.data, tokenizer="word", max_vocab=12, seq_len=8))
    train(config, tmp_path / "run")
    conv = Conversation(load(tmp_path / "run"), ChatOptions(temperature=1.5, seed=0, max_length=30))
    with pytest.warns(CharpoetWarning, match="zebra"):
        conv.say("the zebra")
    answer = conv.say("the")
    assert "<unk>" not in conv.transcript.split("the zebra")[1] and "<unk>" not in answer
    conv.undo()
    assert conv.say("the") == answer
    # a stop string that begins inside a word token: the answer ends before that token, as the model's memory does
    words = Conversation(load(tmp_path / "run"), ChatOptions(temperature=1.5, seed=0, max_length=60, stop=("t",)))
    for line in ("the cat", "the", "the mat"):
        stream = list(words.stream(line))
        turn = words.turns[-1]
        assert "".join(stream) == turn.answer and "t" not in turn.answer
        assert words.transcript.rstrip().endswith(turn.answer)  # what was shown is what the model remembers


# --- the command line --------------------------------------------------------------------------
def chat(run, script, *args):
    return CliRunner().invoke(app, ["chat", "--checkpoint-path", str(run), *map(str, args)], input=script)


def messages(result):
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stderr.splitlines()


def test_scripted_chat_prints_each_answer_then_an_empty_line(run, lm):
    result = chat(run, "The cat sat\n\nROMEO: what light\n", "--seed", "5", "--temperature", "1", "--max-length", "60",
                  "--no-highlight")
    assert messages(result) == []
    _, answers = converse(lm, ["The cat sat", "ROMEO: what light"])
    assert result.stdout == "".join(a + "\n\n" for a in answers)
    highlighted = chat(run, "The cat sat\nROMEO:\n", "--temperature", "0", "--min-quote", "10")
    lines = messages(highlighted)
    assert len(lines) == 2 and lines[0].startswith("turn 1: ") and "copied verbatim" in lines[1]


def test_every_command_and_bad_value_gets_one_line(run, tmp_path):
    script = {
        "/temperature 0.7": "temperature set to 0.7",
        "/temperature": "temperature is 0.7",
        "/temperature abc": "/temperature needs a number, got 'abc'",
        "/temperature 1 2": "/temperature takes one value, got '1 2'",
        "/top-k -1": "/top-k must be >= 0 (0 = off), got -1",
        "/top-k 1.5": "/top-k needs a whole number, got '1.5'",
        "/top-k 5": "top-k set to 5",
        "/top-p 2": "/top-p must be in (0, 1], got 2",
        "/top-p 0.9": "top-p set to 0.9",
        "/length 0": "/length MAX must be >= 1, got 0",
        "/length 5 2": "/length MIN must be <= /length MAX, got 5 > 2",
        "/length -1 5": "/length MIN must be >= 0, got -1",
        "/length x": "/length needs a whole number, got 'x'",
        "/length 1 2 3": "/length takes MAX or MIN MAX, got '1 2 3'",
        "/length 3 40": "answers are 3 to 40 tokens",
        "/length 2": "answers are 2 to 2 tokens",
        "/length": "answers are 2 to 2 tokens",
        "/sentences 0": "/sentences must be >= 1, got 0",
        "/sentences 1": "sentences set to 1",
        "/foo": "unknown command /foo; /help lists the commands",
        "/undo": "nothing to undo",
        "/reset now": "/reset takes no arguments",
        "/reset": "conversation reset",
        "/save": "/save needs a file name: /save FILE",
        f"/save {tmp_path / 'early.txt'}": "nothing to save yet",
        "/QUIT": None,
    }
    result = chat(run, "\n".join(script) + "\nThe cat\n")
    assert messages(result) == [m for m in script.values() if m] and result.stdout == ""
    assert not (tmp_path / "early.txt").exists()
    helped = chat(run, "/help\n")
    assert all(c in helped.stderr for c in ["/temperature", "/top-k", "/top-p", "/length", "/sentences", "/reset",
                                            "/undo", "/save", "/quit"])


def test_settings_apply_to_the_next_answers(run, lm):
    result = chat(run, "/length 4\n/temperature 0\nThe cat\n/length 1 300\n/sentences 1\nROMEO:\n", "--no-highlight")
    first, second, rest = result.stdout.split("\n\n")
    conv = Conversation(lm, ChatOptions(temperature=0, max_length=4))
    assert first == conv.say("The cat") and len(first) <= 4 and rest == ""
    conv.configure(max_length=300, sentences=1)
    assert second == conv.say("ROMEO:") and conv.turns[-1].stop == "sentences"


def test_undo_and_reset_through_the_command_line(run, lm):
    result = chat(run, "The cat sat\nA dog\n/undo\nROMEO:\n/reset\nThe cat sat\n", "--seed", "5", "--temperature", "1",
                  "--max-length", "60", "--no-highlight")
    assert messages(result) == ["dropped the last exchange", "conversation reset"]
    answers = result.stdout.split("\n\n")[:-1]
    _, replay = converse(lm, ["The cat sat", "ROMEO:"])
    assert [answers[0], answers[2], answers[3]] == [replay[0], replay[1], replay[0]]


def test_save_writes_the_transcript_and_a_highlighted_page(run, tmp_path):
    script = f"The cat sat on the mat.\nROMEO: what light\n/save {tmp_path / 'talk.txt'}\n/save {tmp_path / 'page.html'}\n"
    result = chat(run, script, "--temperature", "0", "--min-quote", "10", "--no-highlight",
                  "--user-prefix", "\\nROMEO:\\n", "--bot-prefix", "JULIET:")
    lines = messages(result)
    assert lines == [f"saved 2 exchanges to {tmp_path / 'talk.txt'} and {tmp_path / 'talk.html'}",
                     f"saved 2 exchanges to {tmp_path / 'page.txt'} and {tmp_path / 'page.html'}"]
    transcript = (tmp_path / "talk.txt").read_text(encoding="utf-8")
    assert transcript.startswith("\nROMEO:\nThe cat sat on the mat.\nJULIET:")
    assert "\nROMEO:\nROMEO: what light\nJULIET:" in transcript
    assert (tmp_path / "page.txt").read_text(encoding="utf-8") == transcript
    page = (tmp_path / "talk.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count('class="charpoet-attribution"') == 2
    assert "you&gt;</b> ROMEO: what light" in page and "<mark" in page
    for answer in result.stdout.split("\n\n")[:-1]:
        assert answer.split("\n")[0] in page
    blocked = chat(run, f"The cat\n/save {tmp_path / 'missing' / 'x.txt'}\n", "--no-highlight")
    assert messages(blocked)[-1].startswith("cannot save: ")


def test_quit_stops_reading(run):
    result = chat(run, "The cat\n/quit\nROMEO:\nA dog\n", "--no-highlight")
    assert messages(result) == [] and result.stdout.count("\n\n") == 1


def test_unknown_characters_are_a_message_and_change_nothing(run, lm):
    result = chat(run, "Zebra\u20ac\n//hello\nThe cat sat\n", "--seed", "5", "--temperature", "1", "--max-length", "60",
                  "--no-highlight")
    assert messages(result) == ["characters not in the model's vocabulary: 'Z', '\u20ac'; not sent",
                                "characters not in the model's vocabulary: '/'; not sent"]  # // sends a /line
    assert result.stdout == converse(lm, ["The cat sat"])[1][0] + "\n\n"


def test_bad_options_and_missing_runs_are_errors(run, tmp_path):
    for args, fragment in [(["--checkpoint-path", tmp_path / "nowhere"], "does not exist"),
                           (["--checkpoint-path", run, "--top-p", "2"], "--top-p"),
                           (["--checkpoint-path", run, "--min-length", "9", "--max-length", "5"], "--min-length"),
                           (["--checkpoint-path", run, "--sentences", "0"], "--sentences"),
                           (["--checkpoint-path", run, "--user-prefix", "Zed:"], "--user-prefix"),
                           (["--checkpoint-path", run, "--device", "tpu"], "--device"),
                           (["--checkpoint-path", run, "--min-quote", "0"], "--min-quote")]:
        result = CliRunner().invoke(app, ["chat", *map(str, args)], input="The cat\n")
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and fragment in result.stderr and result.stdout == ""


def test_interactive_loop_streams_highlights_and_survives_ctrl_c(run, lm, monkeypatch, capsys, isolated_home):
    import importlib.util
    import io
    import re

    from rich.console import Console

    from charpoet.cli import chat as chat_cli

    lines = iter(["The cat sat", KeyboardInterrupt, "/temperature 0", "ROMEO:", "/undo", "ROMEO:", EOFError])

    def fake_input(prompt):
        assert prompt == "you> "
        line = next(lines)
        if isinstance(line, type):
            raise line
        return line

    monkeypatch.setattr("builtins.input", fake_input)
    session = chat_cli._Session(Conversation(lm, SAMPLING), run, "the run", True, 10)
    screen = io.StringIO()
    session.console = Console(file=screen, force_terminal=True, width=100)
    chat_cli._interactive(session)
    err = capsys.readouterr().err.splitlines()
    assert err == ["chatting with the run; /help lists the commands, /quit or Ctrl-D leaves",
                   "temperature set to 0", "dropped the last exchange"]
    replay = Conversation(lm, SAMPLING)
    replay.say("The cat sat")
    replay.configure(temperature=0)
    replay.say("ROMEO:")
    assert session.conv.turns == replay.turns
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # without colours and cursor moves
    assert all(t.answer.split("\n")[0] in shown for t in replay.turns)
    assert (isolated_home / "chat_history").exists() or importlib.util.find_spec("readline") is None


def test_odd_input_never_ends_the_chat(run, tmp_path):
    script = "The cat\n/temperature nan\n/temperature inf\n/save /\n/save .\n\udcff\nA dog\n"
    result = chat(run, script.encode("utf-8", "surrogateescape"), "--seed", "1")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "/temperature must be a finite number, got nan" in lines
    assert "/temperature must be a finite number, got inf" in lines
    assert sum(line.startswith("cannot save to") for line in lines) == 2
    assert any("not in the model's vocabulary" in line for line in lines)
    assert result.stdout.count("\n\n") == 2  # both real turns were answered


def test_a_single_stop_string():
    assert ChatOptions(stop="\nYOU:").stop == ("\nYOU:",)
    assert ChatOptions(stop=["a", "b"]).stop == ("a", "b")


def test_a_long_turn_is_fed_in_pieces_with_the_same_result(lm, run, monkeypatch):
    import charpoet.stepper as stepper_module

    text = "The cat sat on the mat. " * 20
    whole = Conversation(lm, SAMPLING).say(text)
    monkeypatch.setattr(stepper_module, "FEED_CHUNK", 7)  # the torch path feeds 7 tokens per pass
    chunked = load(run)
    chunked.__dict__["stepper"] = stepper_module.Stepper(chunked.model, "torch")
    assert Conversation(chunked, SAMPLING).say(text) == whole
