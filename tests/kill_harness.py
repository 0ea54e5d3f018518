"""Run ``charpoet train`` in a process that stalls inside a snapshot write, so a test can kill it there.

    python tests/kill_harness.py MARKER N -- <charpoet train arguments>

The N-th write of ``last.safetensors`` writes half of its bytes to the temporary file that
``atomic_write_bytes`` would rename, creates MARKER, and sleeps: the test then sends
SIGKILL, exactly as if the machine had died in the middle of the write.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import charpoet.checkpoint as checkpoint


def main() -> None:
    marker, stall_at = Path(sys.argv[1]), int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    real_write, calls = checkpoint.atomic_write_bytes, [0]

    def stalling_write(path, data):
        path = Path(path)
        if path.name == checkpoint.LAST:
            calls[0] += 1
            if calls[0] == stall_at:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                marker.write_text(str(tmp))
                time.sleep(600)
        return real_write(path, data)

    checkpoint.atomic_write_bytes = stalling_write
    from charpoet.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()
