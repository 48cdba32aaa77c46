"""Checkpoints: everything a resumed run needs to continue exactly, written atomically.

``RUN_DIR/checkpoints/step_000040/`` holds the model and tokenizer (a loadable Hugging Face
folder, weights as safetensors), ``optimizer.pt`` and ``rng.pt`` (tensors only, read back with
``torch.load(weights_only=True)``) and ``state.json`` (step, data position, LR schedule,
method/controller state, Python RNG state). A checkpoint is written to a temporary folder and
renamed when complete; ``checkpoints/latest`` names the newest complete one and is replaced
atomically, so a crash or kill at any point leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch

from entropic_rl.models import resolve_model_path
from entropic_rl.util.files import folder_written_atomically, write_atomically

LATEST = "latest"


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
    write_atomically(root / LATEST, final.name)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return folder if (folder / "state.json").is_file() else None


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


def _cuda_rng() -> dict:
    return {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}


def resolve_model_dir(path: str, field: str) -> Path:
    """A model folder, ``smollm2``, a checkpoint, or a run directory (its latest checkpoint)."""
    folder = resolve_model_path(path, field)
    if (folder / "checkpoints").is_dir():
        return latest_checkpoint(folder) or folder
    return folder
