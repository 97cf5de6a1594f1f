"""Does ReFT beat SFT on the demo, on every run? Runs the default `reftune demo` for each seed and
each CPU kernel path (each run its own warm-up and branches; the cached base model is shared) and
prints test top-1 in points:

    {"runs": [{"seed", "kernels", "warmup", "sft", "reft", "gap", "gap_interval", "verdict",
               "seconds", "sft_pick", "reft_pick"}, ...],
     "mean": {"warmup", "sft", "reft", "gap"}, "std": {same}, "min": {same}}     gap = reft - sft

`--kernels torch onednn` forces REFTUNE_CPU_LINEAR per run: the two paths agree only to fp32
rounding, so each is, for the demo, another machine. Each branch stands for its pick on dev among
its start (the warm-up's last epoch) and its own checkpoints; *_pick says which.

Targets: over >= 8 runs (>= 4 seeds x both kernel paths) every gap >= +3 points of test top-1 and
the mean >= +8. The JSON also records the machine: its CPU, cores and OMP_NUM_THREADS (runs started
side by side, one thread each, are another machine again).

    python benchmarks/demo_gap.py [--seeds 0 1 2 3] [--kernels torch onednn] [--output runs/demo-gap]
        [--reuse] [--save benchmarks/results/demo-gap-DATE.json] [-- extra demo flags]

--reuse reads a run's folder that already holds a finished demo with the same settings instead of
running it again (the demo is deterministic on one machine and kernel path). Flags after `--` go to
every `reftune demo` (a setting tried on dev, say); they are recorded in the JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from reftune.config import DemoConfig


def finished(folder: Path, wanted: dict) -> bool:
    """Whether `folder` holds a finished demo whose saved config is `wanted` (but for where it wrote
    and how it showed progress)."""
    if not (folder / "summary.json").exists():
        return False
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    return all(saved.get(key) == value for key, value in wanted.items() if key not in ("output", "progress"))


def wanted_config(seed: int, quick: bool, extra: list[str]) -> dict:
    """The DemoConfig a run with these flags saves, as a dict (the extra flags parsed as the CLI does)."""
    from reftune.cli import build_parser
    from reftune.config.options import resolve_config

    args = build_parser().parse_args(["demo", "--seed", str(seed), *(["--quick"] if quick else []), *extra])
    return dataclasses.asdict(resolve_config(DemoConfig, args))


def run_one(seed: int, kernels: str, folder: Path, args, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "reftune.cli", "demo", "--seed", str(seed), "--output", str(folder),
               "--no-progress", *(["--quick"] if args.quick else []), *extra]
    environment = dict(os.environ, **({"REFTUNE_CPU_LINEAR": kernels} if kernels != "auto" else {}))
    if not (args.reuse and finished(folder, wanted_config(seed, args.quick, extra))):
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=environment)
    summary = json.loads((folder / "summary.json").read_text())
    points = {name: round(100 * summary["results"][label]["top1"], 2)
              for name, label in (("warmup", "warm-up"), ("sft", "SFT"), ("reft", "ReFT"))}
    picks = {f"{name}_pick": summary["results"][label].get("chosen") for name, label in (("sft", "SFT"), ("reft", "ReFT"))}
    row = {"seed": seed, "kernels": summary.get("cpu_linear", kernels), **points,
           "gap": round(points["reft"] - points["sft"], 2)}
    if "gap_interval" in summary:
        row["gap_interval"] = [round(100 * bound, 2) for bound in summary["gap_interval"]]
        row["verdict"] = summary.get("certainty")
    threads = json.loads((folder / "run.json").read_text()).get("cpu_threads")
    return {**row, "cpu_threads": threads, "seconds": summary["seconds"], **picks}


def spread(runs: list[dict]) -> dict:
    keys = ("warmup", "sft", "reft", "gap")
    return {"mean": {k: round(statistics.mean(r[k] for r in runs), 2) for k in keys},
            "std": {k: round(statistics.pstdev(r[k] for r in runs), 2) for k in keys},
            "min": {k: round(min(r[k] for r in runs), 2) for k in keys}}


def machine() -> dict:
    """The CPU's name, its cores and the thread count the runs were given."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor(), "cores": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--kernels", nargs="+", default=["auto"], choices=["auto", "torch", "onednn"],
                        help="REFTUNE_CPU_LINEAR for each run (auto: the machine's probe decides)")
    parser.add_argument("--output", default="runs/demo-gap")
    parser.add_argument("--quick", action="store_true", help="the smoke-run demo (no claim)")
    parser.add_argument("--reuse", action="store_true", help="read finished run folders instead of rerunning them")
    parser.add_argument("--save", help="also write the JSON to this file (e.g. benchmarks/results/demo-gap-DATE.json)")
    args = parser.parse_args(argv)
    runs = []
    for kernels in args.kernels:
        for seed in args.seeds:
            folder = Path(args.output) / (f"seed-{seed}" if kernels == "auto" else f"{kernels}-seed-{seed}")
            runs.append(run_one(seed, kernels, folder, args, extra))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "demo_flags": extra, "runs": runs,
              **spread(runs)}
    text = json.dumps(result, indent=1)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
