"""Corpora: libraries of named text sources, read from files or built in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from charpoet.corpus.builtin import builtin_names, load_builtin
from charpoet.corpus.cache import charpoet_home
from charpoet.corpus.files import decode_text, expand_paths, library_from_paths, read_text_file
from charpoet.corpus.library import Library, Source, load_library_file, save_library
from charpoet.errors import CorpusError

if TYPE_CHECKING:
    from charpoet.config import DataConfig

__all__ = [
    "Library", "Source", "builtin_names", "charpoet_home", "decode_text", "expand_paths",
    "library_from_paths", "load_builtin", "load_data_library", "load_library", "load_library_file",
    "read_text_file", "save_library",
]

DEFAULT_CORPUS = "shakespeare"


def load_library(
    text_paths: Sequence[str] | None = None, corpus: str | None = None, library: str | None = None
) -> Library:
    """Read ``text_paths``, or a book ``library`` (name or directory), or the built-in ``corpus``.

    At most one of them may be given; with none, the built-in shakespeare corpus.
    """
    given = [flag for flag, value in (("--text-path", text_paths), ("--corpus", corpus),
                                      ("--library", library)) if value]
    if len(given) > 1:
        raise CorpusError(f"give only one of {' and '.join(given)}")
    if text_paths:
        return library_from_paths(text_paths)
    if library:
        from charpoet.corpus.gutenberg import open_library

        return open_library(library).load()
    return load_builtin(corpus or DEFAULT_CORPUS)


def load_data_library(data: DataConfig) -> Library:
    """The texts a run's data options name: its text files, else its book library, else its corpus."""
    if data.text_path or data.library:
        return load_library(data.text_path or None, library=data.library or None)
    return load_library(corpus=data.corpus)
