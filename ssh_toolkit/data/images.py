"""Image files as the toolkit reads them: content hash and a check for damage that OpenCV decodes silently.

OpenCV (libjpeg) decodes a truncated JPEG and fills the missing rows with grey, printing only a C-level warning
that Python never sees. A result computed on such an image is silently wrong, so every image is checked when it
is hashed: the file must end its stream properly (JPEG end-of-image marker, PNG ``IEND`` chunk).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_TAIL = 64  # bytes searched for the end marker (encoders may pad after it)


def damage(data: bytes) -> str | None:
    """What is wrong with an image file's bytes that a decoder would hide, or None.

    >>> damage(b"\\xff\\xd8 ... \\xff\\xd9")
    >>> damage(b"\\xff\\xd8 ...")
    'truncated JPEG: no end-of-image marker (FFD9); decoders fill the missing part with grey'
    """
    if data.startswith(_JPEG_SOI):
        if _JPEG_EOI not in data[-_TAIL:]:
            return "truncated JPEG: no end-of-image marker (FFD9); decoders fill the missing part with grey"
    elif data.startswith(_PNG_SIGNATURE):
        if _PNG_IEND not in data[-_TAIL:]:
            return "truncated PNG: no IEND chunk"
    return None


def scan_file(path: str | Path) -> tuple[str, str | None]:
    """``(sha256 of the file, damage or None)`` reading the file once."""
    data = Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest(), damage(data)
