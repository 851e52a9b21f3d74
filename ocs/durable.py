"""Making a file or a directory entry durable (fsync of the path itself)."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """fsync a file, or a directory after entries in it were created,
    renamed or removed (their names are durable only then)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
