"""Where converted and warm-started models are cached."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ENTROPIC_RL_CACHE``, else ``$XDG_CACHE_HOME/entropic-rl``, else ``~/.cache/entropic-rl``."""
    if "ENTROPIC_RL_CACHE" in os.environ:
        return Path(os.environ["ENTROPIC_RL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "entropic-rl"
