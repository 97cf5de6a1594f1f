"""The caller's side of the sandbox: a warm pool of worker processes and the scheduler that feeds it.

The workers are reftune/execution/sandbox.py run as a script; its docstring gives the isolation model.
"""
from __future__ import annotations

import os
import select
import subprocess
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

from reftune.execution import sandbox
from reftune.execution.sandbox import MAX_PROGRAM_CHARS, SANDBOX_UID_BASE, read_message, write_message

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MEMORY_MB = 512


@dataclass(frozen=True)
class ProgramResult:
    """What running one program gave.

    value: what ``solution()`` returned, as int, float, bool, str or None (other types arrive as
        their ``repr``, cut to 1,000 characters); None when the program failed.
    error: why it failed ("timeout", "SyntaxError: ...", ...), or None on success.
    """

    value: int | float | bool | str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_programs(programs: list[str], timeout: float = DEFAULT_TIMEOUT_S) -> list[ProgramResult]:
    """Run each program's ``solution()`` in the sandbox, in parallel on all cores; never raises
    for a bad program. Uses one warm pool per process, started on first use."""
    return _default_runner().run(programs, timeout)


class ProgramRunner:
    """A warm pool of sandbox workers. Thread-safe; close() (or exit) stops the workers."""

    def __init__(self, num_workers: int | None = None, memory_mb: int = DEFAULT_MEMORY_MB,
                 python_guards: bool = True):
        """python_guards=False drops the audit hook and the import allow-list, leaving the OS
        layer alone: for tests that check that layer, never for real use."""
        if memory_mb < 64:
            raise ValueError(f"memory_mb={memory_mb} is too small for a Python process; use >= 64")
        self.num_workers = num_workers or max(1, len(os.sched_getaffinity(0)))
        self.memory_mb = memory_mb
        self.owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._workers = [_Worker(index, memory_mb, python_guards) for index in range(self.num_workers)]

    def run(self, programs: list[str], timeout: float = DEFAULT_TIMEOUT_S) -> list[ProgramResult]:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        results: list[ProgramResult | None] = [None] * len(programs)
        pending = deque()
        for index, program in enumerate(programs):
            problem = _reject_before_running(program)
            if problem:
                results[index] = ProgramResult(None, problem)
            else:
                pending.append(index)
        with self._lock:
            self._schedule(programs, pending, results, timeout)
        return results  # type: ignore[return-value]

    def _schedule(self, programs, pending, results, timeout) -> None:
        # The zygote enforces the timeout; the caller's deadline only catches a zygote gone wrong.
        grace = 1.0 + timeout
        busy: dict[int, tuple[_Worker, int, float]] = {}
        idle = list(self._workers)
        while pending or busy:
            while pending and idle:
                worker = idle.pop()
                index = pending.popleft()
                if worker.send({"code": programs[index], "timeout": timeout}):
                    busy[worker.stdout_fd] = (worker, index, time.monotonic() + timeout + grace)
                else:
                    worker.restart()
                    results[index] = ProgramResult(None, "sandbox worker failed to start")
                    idle.append(worker)
            if not busy:
                continue
            wait_s = max(0.0, min(deadline for _, _, deadline in busy.values()) - time.monotonic())
            ready, _, _ = select.select(list(busy), [], [], wait_s)
            for fd in ready:
                worker, index, _ = busy.pop(fd)
                reply = worker.receive()
                if reply is None:
                    worker.restart()
                    reply = {"error": "sandbox worker died"}
                results[index] = ProgramResult(reply.get("value"), reply.get("error"))
                idle.append(worker)
            now = time.monotonic()
            for fd, (worker, index, deadline) in list(busy.items()):
                if now > deadline:
                    del busy[fd]
                    worker.restart()
                    results[index] = ProgramResult(None, "timeout")
                    idle.append(worker)

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> "ProgramRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reject_before_running(program) -> str | None:
    if not isinstance(program, str):
        return f"program must be a str, got {type(program).__name__}"
    if len(program) > MAX_PROGRAM_CHARS:
        return f"program too long ({len(program)} characters > {MAX_PROGRAM_CHARS})"
    return None


_RUNNER: ProgramRunner | None = None
_RUNNER_LOCK = threading.Lock()


def _default_runner() -> ProgramRunner:
    global _RUNNER
    with _RUNNER_LOCK:
        # A forked caller (a DataLoader worker, say) must not share its parent's pipes.
        if _RUNNER is None or _RUNNER.owner_pid != os.getpid():
            _RUNNER = ProgramRunner()
        return _RUNNER


class _Spawner:
    """Starts the zygotes from one thread that lives as long as the caller's process. A zygote asks
    the kernel to kill it when its parent dies (PR_SET_PDEATHSIG), and for the kernel the parent is
    the thread that forked it: started from a short-lived thread (a web server's request handler),
    the pool would die with that thread."""

    def __init__(self):
        self.owner_pid = os.getpid()
        self.requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, name="reftune-sandbox-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            command, options, reply = self.requests.get()
            try:
                reply.put((subprocess.Popen(command, **options), None))
            except Exception as exc:  # handed back to the caller, raised in its thread
                reply.put((None, exc))

    def popen(self, command: list[str], **options) -> subprocess.Popen:
        reply: queue.Queue = queue.Queue(maxsize=1)
        self.requests.put((command, options, reply))
        process, error = reply.get()
        if error is not None:
            raise error
        return process


_SPAWNER: _Spawner | None = None
_SPAWNER_LOCK = threading.Lock()  # not _RUNNER_LOCK: a runner being built starts its workers under that


def _spawner() -> _Spawner:
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None or _SPAWNER.owner_pid != os.getpid():  # threads do not survive a fork
            _SPAWNER = _Spawner()
        return _SPAWNER


class _Worker:
    """The caller's handle on one zygote process and its length-prefixed JSON pipe."""

    def __init__(self, index: int, memory_mb: int, python_guards: bool):
        self.index = index
        self.memory_mb = memory_mb
        self.python_guards = python_guards
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        sandbox_uid = SANDBOX_UID_BASE + (os.getpid() % 4096) * 64 + self.index % 64
        self.process = _spawner().popen(
            [sys.executable, "-I", "-S", os.path.abspath(sandbox.__file__), str(sandbox_uid),
             str(self.memory_mb), str(int(self.python_guards))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={}, cwd="/", close_fds=True,
        )
        self.stdout_fd = self.process.stdout.fileno()

    def send(self, message: dict) -> bool:
        try:
            write_message(self.process.stdin.fileno(), message)
            return True
        except OSError:
            return False

    def receive(self) -> dict | None:
        try:
            return read_message(self.stdout_fd)
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


