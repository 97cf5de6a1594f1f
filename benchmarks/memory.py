"""Peak memory of one RL step (PPO with GAE and the value head) on `smollm2-135m`, without and with
--gradient-checkpointing. Each setting runs alone in a fresh process, so one's peak cannot hide the
other's.

The step is the RL stage's own, on GSM8K training questions (N-CoT prompts): sample one completion per
question (temperature 1, the same seed in both settings, so both train on the same completions), score
the answers, the reference pass, GAE, then ppo_epochs clipped updates, all rows in one micro-batch (as
with the default micro_batch_size 8). Memory is the process's peak resident set (ru_maxrss), and that
peak less the resident set once the policy, its value head and the reference copy are loaded: what the
step adds (activations, gradients, AdamW's moments). The peak before the update is given too, since
the update is where checkpointing acts. Threads: torch's default unless OMP_NUM_THREADS says otherwise.

    python benchmarks/memory.py [--questions 8] [--max-new-tokens 200] [--data ../shared/data/gsm8k]

Prints JSON: the settings; per setting (`off`, `on`) the completion tokens sampled, the seconds of the
update and of the whole step, the resident set after loading, the peak before the update and the peak
(MB); the ratio of the two settings' peaks and of their increases over the loaded models.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "gsm8k"


def resident_mb() -> float:
    """The resident set of this process now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# ---- the worker (one setting, in a fresh process) ---------------------------------------------
def rl_step(args, checkpointing: bool) -> dict:
    """One RL step as reftune.stages.rl takes it, with the memory and time of its parts."""
    import torch

    from reftune.algorithms.advantages import VALUE_HEAD_ESTIMATORS
    from reftune.config import RLConfig
    from reftune.generation.rollout import SamplingParams
    from reftune.model.heads import PolicyWithValueHead
    from reftune.stages.rl import (StepContext, build_experience, parameter_groups, reference_logps, reference_policy,
                                   sample_and_score)
    from reftune.training.data import load_examples
    from reftune.training.ppo import ppo_update
    from reftune.training.preparation import adamw, build_accelerator, load_model, seed_everything

    config = RLConfig(task="gsm8k", style="nl", data=str(args.data), model="smollm2-135m",
                      questions_per_step=args.questions, micro_batch_size=args.questions,
                      max_new_tokens=args.max_new_tokens, gradient_checkpointing=checkpointing, report_to="jsonl")
    assert config.advantage_estimator in VALUE_HEAD_ESTIMATORS
    accelerator = build_accelerator()
    task, questions = load_examples(config, "train", args.questions)
    policy = load_model(config, accelerator.device)
    reference = reference_policy(policy.model)
    model = PolicyWithValueHead(policy.model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(parameter_groups(model, trainable, config), config.learning_rate, config.weight_decay)
    loaded_mb = resident_mb()

    step = StepContext(config, task, questions, accelerator, model, model, policy.tokenizer, reference, optimizer,
                       trainable, SamplingParams.of(config, 1))
    seed_everything(0)
    started, times = time.perf_counter(), {}
    scored = sample_and_score(step, questions, times)
    ref_logps = reference_logps(step, scored.rollout)
    experience, _ = build_experience(config, scored.rollout, scored.scores, ref_logps, True, lambda total: total, 1)
    before_update_mb, update_started = peak_mb(), time.perf_counter()
    ppo_update(accelerator, model, optimizer, trainable, experience, config, use_values=True)
    done = time.perf_counter()
    return {"completion_tokens": scored.rollout.num_generated_tokens,
            "sequence_length": scored.rollout.sequences.size(1), "ppo_epochs": config.ppo_epochs,
            "texts_hash": hashlib.sha256("\n".join(scored.rollout.texts).encode()).hexdigest(),
            "update_seconds": round(done - update_started, 1), "step_seconds": round(done - started, 1),
            "threads": torch.get_num_threads(), "loaded_mb": round(loaded_mb), "peak_before_update_mb": round(before_update_mb),
            "peak_mb": round(peak_mb()), "step_increase_mb": round(peak_mb() - loaded_mb)}


# ---- the driver -------------------------------------------------------------------------------
def run_worker(setting: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, __file__, "--worker", setting, "--questions", str(args.questions),
               "--max-new-tokens", str(args.max_new_tokens), "--data", str(args.data)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the {setting} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["off", "on"], help=argparse.SUPPRESS)
    parser.add_argument("--questions", type=int, default=8, help="questions in the step (one sample each)")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the GSM8K folder (train.jsonl)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(rl_step(args, checkpointing=args.worker == "on")))
        return
    off, on = run_worker("off", args), run_worker("on", args)
    print(json.dumps({"settings": {"model": "smollm2-135m", "task": "gsm8k nl", "questions": args.questions,
                                   "max_new_tokens": args.max_new_tokens, "estimator": "gae",
                                   "ppo_epochs": off.pop("ppo_epochs"), "threads": off.pop("threads")},
                      "same_completions": off.pop("texts_hash") == on.pop("texts_hash"),
                      "off": off, "on": {k: v for k, v in on.items() if k not in ("ppo_epochs", "threads")},
                      "peak_ratio": round(on["peak_mb"] / off["peak_mb"], 2),
                      "step_increase_ratio": round(on["step_increase_mb"] / off["step_increase_mb"], 2)}, indent=1))


if __name__ == "__main__":
    main()
