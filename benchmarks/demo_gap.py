"""Does ReFT beat SFT on the demo? Runs the default `reftune demo` with several seeds (each its own
warm-up and branches; the cached base model is shared) and prints test top-1 in points:

    {"seeds": [{"seed", "warmup", "sft", "reft", "seconds", "gap", "sft_pick", "reft_pick"}, ...],
     "mean": {"warmup", "sft", "reft", "gap"}, "std": {same}}        gap = reft - sft

Each branch stands for its pick on dev among its start (the warm-up's last epoch) and its own
checkpoints; *_pick says which ("step N", or "its start (the warm-up)").

Target (demo issue): a mean gap of at least 5 points.

    python benchmarks/demo_gap.py [--seeds 0 1 2] [--output runs/demo-gap] [--reuse]

--reuse reads a seed's folder that already holds a finished demo of that seed instead of running it
again (the demo is deterministic on one machine, so this is what a rerun would print).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from reftune.config import DemoConfig


def finished(folder: Path, seed: int, quick: bool) -> bool:
    """Whether `folder` holds a finished default demo of `seed`: its summary written, and its saved
    config the defaults but for where it wrote and how it showed progress."""
    if not (folder / "summary.json").exists():
        return False
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    wanted = dataclasses.asdict(DemoConfig(seed=seed, quick=quick))
    return all(saved.get(key) == value for key, value in wanted.items() if key not in ("output", "progress"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="runs/demo-gap")
    parser.add_argument("--quick", action="store_true", help="the smoke-run demo (no claim)")
    parser.add_argument("--reuse", action="store_true", help="read finished seed folders instead of rerunning them")
    args = parser.parse_args()
    seeds = []
    for seed in args.seeds:
        folder = Path(args.output) / f"seed-{seed}"
        command = [sys.executable, "-m", "reftune.cli", "demo", "--seed", str(seed), "--output", str(folder),
                   "--no-progress", *(["--quick"] if args.quick else [])]
        if not (args.reuse and finished(folder, seed, args.quick)):
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        summary = json.loads((folder / "summary.json").read_text())
        points = {name: round(100 * summary["results"][label]["top1"], 2)
                  for name, label in (("warmup", "warm-up"), ("sft", "SFT"), ("reft", "ReFT"))}
        picks = {f"{name}_pick": summary["results"][label].get("chosen") for name, label in (("sft", "SFT"), ("reft", "ReFT"))}
        seeds.append({"seed": seed, **points, "seconds": summary["seconds"], **picks})
    keys = ("warmup", "sft", "reft", "gap")
    for row in seeds:
        row["gap"] = round(row["reft"] - row["sft"], 2)
    mean = {k: round(statistics.mean(r[k] for r in seeds), 2) for k in keys}
    std = {k: round(statistics.pstdev(r[k] for r in seeds), 2) for k in keys}
    print(json.dumps({"seeds": seeds, "mean": mean, "std": std}, indent=1))


if __name__ == "__main__":
    main()
