"""Checkpoints: everything a resumed run needs to continue exactly, written atomically.

``RUN_DIR/checkpoints/step_000040/`` holds the model and tokenizer (a loadable Hugging Face
folder, weights as safetensors), ``optimizer.pt`` and ``rng.pt`` (tensors only, read back with
``torch.load(weights_only=True)``) and ``state.json`` (step, data position, LR schedule,
method/controller state, Python RNG state) and ``manifest.json`` (the size and SHA-256 of every
other file). A checkpoint is written to a temporary folder, its manifest last, and renamed when
complete, so a crash, kill or full disk at any point leaves the previous checkpoint intact. A run
resumes from the newest checkpoint whose files match its manifest; a damaged one is named and passed
over.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import torch

from entropic_rl.models import resolve_model_path
from entropic_rl.util.files import folder_written_atomically

MANIFEST = "manifest.json"


def save_checkpoint(
    run_dir: Path, step: int, *, model, tokenizer, optimizer, scheduler, state: dict, keep_last: int
) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    with folder_written_atomically(final, replace=True) as tmp:  # replaces a leftover of a crash before `latest`
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state(), **_cuda_rng()}, tmp / "rng.pt")
        full_state = {**state, "step": step, "scheduler": scheduler.state_dict(), "python_rng": random.getstate()}
        (tmp / "state.json").write_text(json.dumps(full_state))
        write_manifest(tmp)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    entries = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (folder / MANIFEST).write_text(json.dumps({"files": entries}, indent=1))


def checkpoint_problem(folder: Path) -> str | None:
    """What is wrong with the checkpoint ``folder`` (naming the file), or ``None`` when every file
    matches its manifest."""
    manifest = folder / MANIFEST
    try:
        entries = json.loads(manifest.read_text())["files"]
        expected = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in entries.items()}
    except FileNotFoundError:
        return f"{manifest}: missing (an incomplete checkpoint)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{manifest}: unreadable"
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{path}: missing"
        if path.stat().st_size != size:
            return f"{path}: {path.stat().st_size} bytes where {size} were written (truncated?)"
        if _sha256(path) != digest:
            return f"{path}: checksum mismatch (corrupted)"
    return None


def intact_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint of ``run_dir`` whose files match its manifest, and the problem of each
    newer one that does not."""
    problems = []
    for folder in sorted((Path(run_dir) / "checkpoints").glob("step_*"), reverse=True):
        if folder.is_dir():
            problem = checkpoint_problem(folder)
            if problem is None:
                return folder, problems
            problems.append(problem)
    return None, problems


def latest_checkpoint(run_dir: Path) -> Path | None:
    return intact_checkpoint(run_dir)[0]


def load_checkpoint(folder: Path, *, optimizer, scheduler, device: torch.device) -> dict:
    """Restore optimizer, scheduler and RNG states; returns the saved state. (The model is
    loaded from the same folder with ``from_pretrained``.)"""
    state = json.loads((folder / "state.json").read_text())
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location=device))
    scheduler.load_state_dict(state["scheduler"])
    rng = torch.load(folder / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    python_rng = state["python_rng"]
    random.setstate((python_rng[0], tuple(python_rng[1]), python_rng[2]))
    return state


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cuda_rng() -> dict:
    return {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}


def resolve_model_dir(path: str, field: str) -> Path:
    """A model folder, ``smollm2``, a checkpoint, or a run directory (its latest checkpoint)."""
    folder = resolve_model_path(path, field)
    if (folder / "checkpoints").is_dir():
        return latest_checkpoint(folder) or folder
    return folder
