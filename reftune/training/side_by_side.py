"""Two stages at once: one in a second process while this one runs the other, each on half the threads.

A small model's training step does not spread well over threads (2 threads give far less than twice
one), so two independent stages side by side, one thread each on 2 cores, finish sooner than one after
the other on both. The second process is spawned (a fresh interpreter: nothing of this one's torch
state is shared), writes its console to a log file, and raises its error here.
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

from reftune.errors import ReftuneError

STOP_WAIT_S = 120  # after the body is interrupted, how long the second process may take to checkpoint


def threads_each(total: int) -> int:
    """Each side's share of `total` threads (at least one).

    >>> threads_each(2), threads_each(8), threads_each(1)
    (1, 4, 1)
    """
    return max(1, total // 2)


def _second_process(stage: Callable, config, threads: int, log: str, results) -> None:
    """The spawned process: its threads, its console into `log`, then the stage; sends back None or
    the error (as text where it cannot be pickled)."""
    import torch

    torch.set_num_threads(threads)
    stream = open(log, "a", buffering=1)  # line-buffered: the log can be followed while it runs
    os.dup2(stream.fileno(), 1)  # what C code and child processes write, too
    os.dup2(stream.fileno(), 2)
    sys.stdout = sys.stderr = stream
    try:
        stage(config)
        results.send(None)
    except BaseException as error:  # noqa: BLE001 (a Ctrl-C too: the parent says what happened)
        if not isinstance(error, (ReftuneError, KeyboardInterrupt)):
            traceback.print_exc()  # a bug, not a user's mistake: its whole story goes to the log
        try:
            results.send(error)
        except Exception:  # noqa: BLE001 (not picklable)
            results.send(f"{type(error).__name__}: {error}")


@contextmanager
def beside(stage: Callable, config, log: Path):
    """Runs stage(config) in a second process while the body runs here, each on half of this
    process's threads. Leaving the block waits for it and raises its error, if any. When the body
    fails, the second process is stopped; when the body is interrupted (Ctrl-C reaches both), the
    second process is given STOP_WAIT_S to write its checkpoint."""
    import torch

    threads = torch.get_num_threads()
    log.parent.mkdir(parents=True, exist_ok=True)
    context = get_context("spawn")  # a fresh interpreter: nothing of this process's torch state is shared
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_second_process, args=(stage, config, threads_each(threads), str(log), send),
                              name="reftune-beside")
    process.start()
    send.close()  # the child holds the sending end: recv() ends with EOFError if it dies without a word
    torch.set_num_threads(threads_each(threads))
    try:
        yield
    except KeyboardInterrupt:
        process.join(STOP_WAIT_S)
        raise
    except BaseException:
        process.terminate()
        raise
    finally:
        torch.set_num_threads(threads)
    try:
        outcome = receive.recv()  # before join: a large error waits in the pipe until it is read
    except EOFError:  # killed (out of memory, a signal) before it could say why
        outcome = EOFError
    process.join()
    if outcome is EOFError:
        outcome = f"it ended with exit code {process.exitcode} before finishing"
    if isinstance(outcome, BaseException):
        raise outcome
    if outcome is not None:
        raise ReftuneError(f"the stage running beside this one failed: {outcome}; its console is in {log}")
