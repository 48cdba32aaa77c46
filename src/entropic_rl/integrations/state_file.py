"""A method's state in a framework's checkpoint folder: one JSON file, written atomically before the
framework's own files, and required on resume (a missing file is an error, not a silent restart)."""

from __future__ import annotations

import json
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
