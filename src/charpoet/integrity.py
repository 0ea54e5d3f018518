"""Checksums inside run files, so a damaged file is an error and never a silently different model.

Atomic writes protect a run from crashes; they cannot protect it from a disk, a copy or a
sync tool that flips or drops bytes later. A run's JSON files (``config.json``, ``vocab.json``)
carry a ``"crc32"`` entry over their canonical JSON, and its safetensors files a ``"crc32"``
metadata entry over the whole file (written with eight zeros in its place). Readers check
both; files written before checksums existed have none and are read as they are.
``library.json.gz`` needs nothing more: gzip's own CRC covers it.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from charpoet.errors import CheckpointError

CRC_KEY = "crc32"
PLACEHOLDER = "0" * 8
_MARK = f'"{CRC_KEY}":"'.encode()


def crc32(data: bytes | memoryview) -> str:
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _canonical(obj: Any) -> bytes:
    """Sorted, compact JSON of ``obj`` as a reader sees it (a round trip first: tuples become lists,
    integer keys strings), so writer and reader hash the same bytes."""
    obj = json.loads(json.dumps(obj))
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def seal_json(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with a ``"crc32"`` entry over its canonical JSON (keys sorted, no spaces)."""
    body = {k: v for k, v in obj.items() if k != CRC_KEY}
    return {**body, CRC_KEY: crc32(_canonical(body))}


def unseal_json(obj: dict[str, Any], origin: object) -> dict[str, Any]:
    """``obj`` without its checksum; ``CheckpointError`` if the checksum does not match."""
    if CRC_KEY not in obj:
        return obj  # written before checksums, or by hand
    body = {k: v for k, v in obj.items() if k != CRC_KEY}
    if obj[CRC_KEY] != crc32(_canonical(body)):
        raise CheckpointError(f"{origin} is corrupt: its contents do not match its checksum (if you edited "
                              f'it by hand, delete its "{CRC_KEY}" entry)')
    return body


def _header(data: bytes, origin: object) -> tuple[int, int]:
    """Start and end of a safetensors file's JSON header."""
    if len(data) < 8:
        raise CheckpointError(f"{origin} is corrupt: {len(data)} bytes, shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise CheckpointError(f"{origin} is corrupt: truncated (header of {size} bytes in a file of {len(data)})")
    return 8, 8 + size


def seal_safetensors(data: bytes) -> bytes:
    """Fill in the ``crc32`` metadata entry of a safetensors file written with ``PLACEHOLDER`` there."""
    start, end = _header(data, "safetensors data")
    at = data.find(_MARK + PLACEHOLDER.encode(), start, end)
    if at < 0:
        raise ValueError(f"no {CRC_KEY} placeholder in the safetensors metadata")
    at += len(_MARK)
    return data[:at] + crc32(data).encode() + data[at + len(PLACEHOLDER):]


def verify_safetensors(data: bytes, origin: object) -> None:
    """``CheckpointError`` unless the file's ``crc32`` entry matches its bytes (none: not checked)."""
    start, end = _header(data, origin)
    at = data.find(_MARK, start, end)
    if at < 0:
        return  # written before checksums
    at += len(_MARK)
    stored = data[at:at + len(PLACEHOLDER)]
    zeroed = data[:at] + PLACEHOLDER.encode() + data[at + len(PLACEHOLDER):]
    if stored.decode("ascii", "replace") != crc32(zeroed):
        raise CheckpointError(f"{origin} is corrupt: its bytes do not match its checksum")
