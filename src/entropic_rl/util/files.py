"""Files and folders written so that a crash or kill at any point leaves the old content or the new,
never a part."""

from __future__ import annotations

import fcntl
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


@contextmanager
def held_by_this_process(folder: Path) -> Iterator[bool]:
    """Yields whether this process holds ``folder``'s lock (``folder/.lock``, created if missing) for
    the block: False while another process holds it. The operating system drops the lock when its
    holder exits, killed or not, so a crash never leaves a folder locked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the file releases the lock


def wait_until_released(folder: Path) -> None:
    """Block until no other process holds ``folder``'s lock (``held_by_this_process``)."""
    with open(Path(folder) / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # and released at once, when the file closes
