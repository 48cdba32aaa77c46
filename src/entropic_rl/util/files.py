"""Files and folders written so that a crash or kill at any point leaves the old content or the new,
never a part."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """``path`` holds ``text`` or its previous content, never a part: written aside, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def folder_written_atomically(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yields a temporary folder beside ``final``, renamed to ``final`` when the block completes and
    removed if it raises. An existing ``final`` is replaced when ``replace``; otherwise it is kept
    (another process finished the same work first)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        if replace and final.exists():
            shutil.rmtree(final)
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
