"""Throughput of P-CoT program execution: reftune's warm sandbox pool against a new process pool per
batch (the authors' approach: their executor opens a fresh pool for every batch of programs).

Prints JSON. Target (foundation issue): >= 500 programs/s on 2 cores and >= 10x the baseline.

    python benchmarks/execution.py [--programs 1000] [--batch-sizes 4 32] [--parent-mb 0 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout

from reftune.execution import ProgramRunner


def trivial_programs(count: int) -> list[str]:
    return [f"def solution():\n    a = {i}\n    b = 3\n    return a * b + 1" for i in range(count)]


def run_one_unsandboxed(program: str):
    namespace: dict = {}
    exec(program, namespace)
    return namespace["solution"]()


def baseline_batch(programs: list[str], workers: int, timeout: float) -> list:
    """A fresh pool per batch, one future per program with a timeout, as the authors' executor."""
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_one_unsandboxed, program) for program in programs]
        for future in futures:
            try:
                results.append(future.result(timeout=timeout))
            except (FutureTimeout, Exception):  # noqa: BLE001 - the baseline swallows failures too
                results.append(None)
    return results


def measure(run_batch, programs: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(programs), batch_size):
        run_batch(programs[start:start + batch_size])
    return len(programs) / (time.perf_counter() - started)


def measure_scenario(programs, batch_size: int, parent_mb: int, workers: int, timeout: float) -> dict:
    ballast = bytearray(parent_mb * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is really resident
    with ProgramRunner(num_workers=workers) as runner:
        runner.run(programs[:50], timeout)  # warm-up: the pool starts once per process
        check = runner.run(programs[:10], timeout)
        assert [r.value for r in check] == [i * 3 + 1 for i in range(10)]
        reftune_rate = measure(lambda batch: runner.run(batch, timeout), programs, batch_size)
    baseline_rate = measure(lambda batch: baseline_batch(batch, workers, timeout), programs, batch_size)
    del ballast
    return {"batch_size": batch_size, "parent_mb": parent_mb,
            "reftune_programs_per_s": round(reftune_rate, 1),
            "baseline_programs_per_s": round(baseline_rate, 1),
            "speedup": round(reftune_rate / baseline_rate, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000, help="programs per scenario")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 32],
                        help="programs per call: 4 is the paper's per-GPU rollout batch")
    parser.add_argument("--parent-mb", type=int, nargs="+", default=[0, 2000],
                        help="memory the calling process holds, as a training process holds a model and "
                             "optimizer state (2000 MB: SmolLM2-135M with AdamW in fp32); a pool forked "
                             "per batch copies its page tables, warm workers do not")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    workers = len(os.sched_getaffinity(0))
    programs = trivial_programs(args.programs)
    scenarios = [measure_scenario(programs, batch_size, parent_mb, workers, args.timeout)
                 for parent_mb in args.parent_mb for batch_size in args.batch_sizes]
    print(json.dumps({
        "workers": workers, "root": os.geteuid() == 0, "python": platform.python_version(),
        "baseline": "a new ProcessPoolExecutor (fork) per batch, no sandbox",
        "scenarios": scenarios,
        "targets": {"programs_per_s": 500, "speedup": 10},
        "min_reftune_programs_per_s": min(s["reftune_programs_per_s"] for s in scenarios),
    }, indent=2))


if __name__ == "__main__":
    main()
