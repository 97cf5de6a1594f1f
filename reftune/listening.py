"""The listening socket that `reftune serve` and `reftune review` share: bound before the app loads,
so a port in use is one clear line at once, and port 0 lets the system pick a free one."""
from __future__ import annotations

import errno
import ipaddress
import socket

from reftune.errors import ReftuneError


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (with or without brackets) and localhost.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; one clear line when it cannot be had, saying whether the host
    or the port is to blame."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
    except OSError as exc:
        listener.close()
        raise ReftuneError(f"cannot listen on {host}:{port}: {why_not_bound(exc, host)}") from None
    listener.listen(128)
    return listener


def why_not_bound(exc: OSError, host: str) -> str:
    """What to change when bind() failed: the host (unknown, or not this machine's) or the port."""
    other_host = "use an address of this machine: --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
    if isinstance(exc, socket.gaierror):
        return f"the host {host!r} cannot be resolved ({exc.strerror}); {other_host}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine ({exc.strerror}); {other_host}"
    if exc.errno == errno.EACCES:
        return f"{exc.strerror} (ports below 1024 need privileges): choose a port above 1023, or --port 0 for a free one"
    return f"{exc.strerror}: choose another --port, or --port 0 for a free one"


def url_of(listener: socket.socket, host: str) -> str:
    """The http URL a listening socket answers on."""
    port = listener.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"
