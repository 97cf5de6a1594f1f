"""Whether the Hugging Face hub can be reached from here: asked once per process, with a short
timeout, so a name that is not local fails in a second offline instead of after a minute of retries."""
from __future__ import annotations

import functools
import os
import socket
import threading
from urllib.parse import urlparse

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
