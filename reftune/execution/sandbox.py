"""The worker side of the sandbox: the zygote process and the child that runs one program.

Standard library only: this file is the script the workers run (``python -I -S sandbox.py``),
without the reftune package on the path.

Architecture
    caller --pipe--> N warm "zygote" workers (one per core, started once, reused across batches)
    zygote --fork--> one short-lived child per program, which runs it and writes one JSON reply.
A fresh child per program means no program can see or change another's state (module globals,
monkey-patched builtins), while the fork of a small warm process keeps the cost near a millisecond.

Isolation model, as root (the CI and GPU machines run as root):
  - the zygote starts with an empty environment, moves into a new network namespace (no interface
    but a downed loopback) and chroots into an empty directory that it then deletes, so a child sees
    no files at all: nothing to read (no /proc/<pid>/environ), nothing to write;
  - each child drops to a uid of its own worker (not root, not the caller's), so it can signal
    neither the caller nor another worker's programs, and RLIMIT_NPROC=0 then forbids fork, threads
    and exec (limits on process count do not bind root, hence the drop);
  - rlimits: address space (memory_mb), file size 0, CPU seconds (a backstop), no core dumps;
  - a Python audit hook refuses open, imports of modules not preloaded, sockets, subprocesses,
    signals to other processes, ctypes and the file-system calls, with a readable error;
  - the zygote kills the child with SIGKILL at the deadline (signals it ignores do not matter), and
    the caller kills a zygote that misses its own deadline, then starts a new one; every process
    gets PR_SET_PDEATHSIG so nothing outlives its parent.
As a normal user, what needs privilege is weaker: no chroot and no uid change; the network namespace
is made inside a new user namespace where the kernel allows it. RLIMIT_NPROC=0 still forbids new
processes, RLIMIT_FSIZE=0 forbids writing file contents, and the audit hook refuses the rest. The
audit hook is no security boundary on its own (CPython says so), so run as root, or in a container,
where programs come from a model you do not trust.
"""
from __future__ import annotations

import builtins
import json
import math
import numbers
import os
import resource
import select
import signal
import struct
import sys
import tempfile
import time

MAX_PROGRAM_CHARS = 20_000
MAX_REPLY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 1_000
# Child uids (root only): one per worker, far above any real account.
SANDBOX_UID_BASE = 0x7FF0_0000

# Modules a program may import: loaded in the zygote before the jail closes, so the import is a
# dictionary look-up in the child; every other import is refused.
PRELOADED_MODULES = (
    "math", "cmath", "fractions", "decimal", "statistics", "itertools", "functools", "collections",
    "operator", "random", "re", "string", "datetime", "_strptime", "numbers", "heapq", "bisect",
    "typing", "dataclasses", "copy",
)

_DENIED_EVENT_PREFIXES = (
    "open", "os.", "shutil.", "subprocess.", "socket.", "ctypes.", "mmap.", "resource.prlimit",
    "signal.pthread_kill", "sys.addaudithook", "builtins.input", "import", "pty.", "fcntl.", "glob.",
    "tempfile.", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "telnetlib.", "winreg.",
)



def write_message(fd: int, message: dict) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise OSError("pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> dict:
    (size,) = struct.unpack(">I", _read_exactly(fd, 4))
    if size > MAX_REPLY_BYTES * 2:
        raise ValueError("message too large")
    return json.loads(_read_exactly(fd, size))


CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


class _Zygote:
    def __init__(self, sandbox_uid: int, memory_mb: int, python_guards: bool):
        import ctypes

        self.python_guards = python_guards
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        self.is_root = os.geteuid() == 0
        self.sandbox_uid = sandbox_uid
        self.memory_bytes = memory_mb * 1024 * 1024
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self._isolate_network()
        for name in PRELOADED_MODULES:
            __import__(name)
        self._jail()

    def _isolate_network(self) -> None:
        flags = CLONE_NEWNET if self.is_root else CLONE_NEWUSER | CLONE_NEWNET
        # Best effort: a kernel without namespaces still has the audit hook refusing sockets.
        self.libc.unshare(flags)

    def _jail(self) -> None:
        if not self.is_root:
            os.chdir(tempfile.gettempdir())
            return
        jail = tempfile.mkdtemp(prefix="reftune-jail-")
        parent_fd = os.open(os.path.dirname(jail), os.O_RDONLY)
        os.chmod(jail, 0o555)
        os.chroot(jail)
        os.chdir("/")
        # The jail is empty and stays so; unlinking it leaves nothing behind on disk.
        os.rmdir(os.path.basename(jail), dir_fd=parent_fd)
        os.close(parent_fd)

    def serve(self) -> None:
        while True:
            try:
                request = read_message(0)
            except (OSError, ValueError):
                return
            write_message(1, self.run_one(request["code"], float(request["timeout"])))

    def run_one(self, code: str, timeout: float) -> dict:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            self._child(code, write_fd, timeout)  # never returns
        os.close(write_fd)
        try:
            reply, status = self._collect(pid, read_fd, time.monotonic() + timeout)
        finally:
            os.close(read_fd)
        if reply is not None:
            return reply
        return {"error": status}

    def _collect(self, pid: int, read_fd: int, deadline: float) -> tuple[dict | None, str]:
        """Read the child's reply and reap it; SIGKILL at the deadline. Returns (reply, status)."""
        data = bytearray()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # kernels before 5.3: an exit is seen as EOF, then waitpid polls
            pidfd = None
        try:
            open_fds, timed_out = [read_fd] + ([pidfd] if pidfd is not None else []), False
            while read_fd in open_fds or pidfd in open_fds:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select(open_fds, [], [], remaining)
                if read_fd in ready:
                    chunk = os.read(read_fd, 65536)
                    data += chunk
                    if not chunk:
                        open_fds.remove(read_fd)
                    elif len(data) > MAX_REPLY_BYTES:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        return None, "result too large"
                if pidfd in ready:
                    open_fds.remove(pidfd)
                    if read_fd in open_fds:  # exited: drain what it wrote
                        while chunk := os.read(read_fd, 65536):
                            data += chunk
                        open_fds.remove(read_fd)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        status = None if timed_out else _wait_until(pid, deadline)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, "timeout"

        return _validate_reply(bytes(data)), _describe_exit(status)

    def _child(self, code: str, write_fd: int, timeout: float) -> None:
        try:
            self.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            for fd in (0, 1, 2):
                os.dup2(self.devnull, fd)
            os.dup2(write_fd, 3)  # after the devnull copies: devnull itself may be fd 3
            os.closerange(4, 1 << 16)
            self._drop_privileges(timeout)
            if self.python_guards:
                sys.addaudithook(_deny_audit_event)
                builtins.__import__ = _allowlisted_import
            reply = _run_solution(code)
        except BaseException as exc:  # noqa: BLE001 - the child must always answer
            reply = {"error": _describe_exception(exc)}
        try:
            os.write(3, json.dumps(reply).encode())
        finally:
            os._exit(0)

    def _drop_privileges(self, timeout: float) -> None:
        if self.is_root:
            os.setgroups([])
            os.setgid(self.sandbox_uid)
            os.setuid(self.sandbox_uid)
        cpu_s = math.ceil(timeout) + 1
        for limit, value in (
            (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_NOFILE, 4),
        ):
            resource.setrlimit(limit, (value, value))


_real_import = __import__


def _allowlisted_import(name, globals=None, locals=None, fromlist=(), level=0):
    # Modules the zygote loaded for itself (os, subprocess, ...) sit in sys.modules, where the
    # audit hook's import event never fires: refuse them by name, with the list of what is allowed.
    if level != 0 or name.partition(".")[0] not in PRELOADED_MODULES:
        raise ImportError(f"import of {name!r} is not allowed in the sandbox "
                          f"(allowed: {', '.join(m for m in PRELOADED_MODULES if m[0] != '_')})")
    return _real_import(name, globals, locals, fromlist, level)


def _wait_until(pid: int, deadline: float) -> int | None:
    """The exit status of `pid`, or None if it still runs at the deadline (it closed its pipe but
    went on running)."""
    while True:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.0005)


def _deny_audit_event(event: str, args: tuple) -> None:
    if event == "exec" or event == "compile":
        return
    if event.startswith(_DENIED_EVENT_PREFIXES):
        raise PermissionError(f"{event} is not allowed in the sandbox")


def _run_solution(code: str) -> dict:
    namespace = {"__name__": "__sandbox__"}
    exec(compile(code, "<program>", "exec"), namespace)
    solution = namespace.get("solution")
    if not callable(solution):
        return {"error": "the program defines no solution() function"}
    return {"value": _plain_value(solution())}


def _plain_value(value):
    """What JSON carries back: bool, int, float, str or None; anything else as a short repr."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        if abs(value) >= 10**300:
            return float("inf") if value > 0 else float("-inf")
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value[:MAX_TEXT_CHARS]
    return repr(value)[:MAX_TEXT_CHARS]


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "the program called exit()"
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = ""
    return f"{type(exc).__name__}: {text}"[:MAX_TEXT_CHARS] if text else type(exc).__name__


def _validate_reply(data: bytes) -> dict | None:
    """The child is untrusted: accept only {"value": scalar} or {"error": str}."""
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    if not isinstance(reply, dict) or len(reply) != 1:
        return None
    if "error" in reply and isinstance(reply["error"], str):
        return {"error": reply["error"][:MAX_TEXT_CHARS]}
    value = reply.get("value", ...)
    if value is None or isinstance(value, (bool, int, float)):
        return {"value": value}
    if isinstance(value, str):
        return {"value": value[:MAX_TEXT_CHARS]}
    return None


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum in (signal.SIGXCPU, signal.SIGKILL):
            return "timeout (CPU limit)"
        return f"the program was killed by signal {signal.Signals(signum).name}"
    return "the program exited without a result"


if __name__ == "__main__":
    _Zygote(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1").serve()
