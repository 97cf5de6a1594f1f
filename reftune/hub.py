"""Whether the Hugging Face hub can be reached from here: asked once per process, with a short
timeout, so a name that is not local fails in a second offline instead of after a minute of retries;
and a name that can only be a local path is never asked about at all (no torch here: `serve` checks
its model before the slow imports)."""
from __future__ import annotations

import functools
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from reftune.errors import ReftuneError

OFFLINE_WORDS = ("1", "true", "yes", "on")


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the hub's host opens within `timeout` seconds (name lookup
    included: it runs in a thread, since a lookup cannot be given a timeout of its own)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in OFFLINE_WORDS:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    opened = threading.Event()

    def connect() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            opened.set()
        except OSError:
            pass

    threading.Thread(target=connect, daemon=True).start()
    return opened.wait(timeout)


def looks_like_a_path(name: str) -> bool:
    """Whether `name` can only be a path, never a hub id ("org/model" is either, so it is not).

    >>> [looks_like_a_path(n) for n in ("/runs/x", "./x", "../x", "~/x", "runs/a/best", "x/", "org/model", "gpt2")]
    [True, True, True, True, True, True, False, False]
    """
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.endswith(("/", os.sep))
            or name.count("/") > 1 or "\\" in name)


def check_model_path(name: str | os.PathLike) -> None:
    """Refuse at once what cannot be a model: a path that does not exist (rather than asking the hub
    for it), or a folder that holds a model one level down: a reftune run (its best/) or a checkpoint
    (its model/), where the loader's own error would not say where to look."""
    path = Path(name)
    if not path.exists():
        if looks_like_a_path(str(name)):
            raise ReftuneError(f"model folder {str(name)!r} does not exist: give the folder of a saved model (a run's "
                               f"best/), a hub id, 'smollm2-135m' or 'tiny'")
        return
    if path.is_dir() and not (path / "config.json").exists():
        inside = [path / "best", path / "model"]
        found = next((str(folder) for folder in inside if (folder / "config.json").is_file()), None)
        if found:
            raise ReftuneError(f"{path} is a reftune {'run' if found.endswith('best') else 'checkpoint'} folder, not a "
                               f"model folder: name the model inside it, {found}")
