"""A method's state in a framework's checkpoint folder: one JSON file, written atomically, and
required on resume (a missing file is an error, not a silent restart of the controller). TRL's
plug-in writes it after TRL's files, so it marks the checkpoint complete; verl's writes it before
verl's files, since verl's pointer to its latest checkpoint is written last."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from entropic_rl.methods import Method
from entropic_rl.util.files import write_atomically

STATE_FILE = "entropic_controller.json"


def save_method_state(folder: Path, method: Method) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / STATE_FILE, json.dumps(method.state_dict()))


def load_method_state(folder: Path, method: Method) -> None:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no EntroPIC controller state in this checkpoint (was it written with the entropic-rl plug-in?)"
        )
    method.load_state_dict(json.loads(path.read_text()))


def complete_checkpoint(output_dir: Path, prefix: str = "checkpoint") -> Path:
    """The newest ``{prefix}-{step}`` folder of ``output_dir`` that holds the method's state (written
    last, so the framework's files before it are complete). Newer folders without it were cut short
    while being written: each is named on stderr and passed over. ``ValueError`` when there is none."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)$")
    folders = sorted(
        (p for p in Path(output_dir).glob(f"{prefix}-*") if p.is_dir() and pattern.match(p.name)),
        key=lambda p: int(pattern.match(p.name).group(1)),
        reverse=True,
    )
    for folder in folders:
        if (folder / STATE_FILE).is_file():
            return folder
        print(f"warning: passing over {folder}: no {STATE_FILE} (its writing was cut short)", file=sys.stderr)
    found = f"; {len(folders)} incomplete" if folders else ""
    raise ValueError(f"resume_from_checkpoint: no complete checkpoint in {output_dir}{found}")
