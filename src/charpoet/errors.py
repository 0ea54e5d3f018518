"""Exceptions and warnings raised by the library.

Every error a user can cause (bad input, bad option, missing or corrupt run) is a
``CharpoetError``: the command line prints its message on one line and exits with
status 2. Anything else is a bug and keeps its traceback.
"""


class CharpoetError(Exception):
    """A problem the user can fix; the message is one line that says what and where."""


class ConfigError(CharpoetError):
    """An option value is invalid or inconsistent."""


class CorpusError(CharpoetError):
    """A text source cannot be read or used (missing, empty, binary, undecodable)."""


class TokenizerError(CharpoetError):
    """Text cannot be encoded with a run's vocabulary."""


class CheckpointError(CharpoetError):
    """A run directory is missing, incomplete, corrupt or incompatible."""


class PeerError(CharpoetError):
    """Another process of a torchrun group stopped (it reports why, or torchrun does)."""


class CharpoetWarning(UserWarning):
    """Something worked but the user should know (fallback encoding, shrunk batch...)."""
