"""Where reftune keeps what it builds once per machine: converted models, the demo's base model, the
CPU kernel choice."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$REFTUNE_CACHE, else $XDG_CACHE_HOME/reftune, else ~/.cache/reftune."""
    if os.environ.get("REFTUNE_CACHE"):
        return Path(os.environ["REFTUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reftune"
