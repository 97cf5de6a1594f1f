"""reftune's RL stage against TRL on equal work: the same tiny model, prompts, samples per prompt,
completion length and number of steps; each side runs alone in a fresh process.

- ppo: reftune's PPO (value head on the shared backbone, KL in the reward) against TRL's PPOTrainer,
  which exists only up to TRL 1.12 and needs a reward model and a separate value model (both built
  here from the same tiny config). TRL's reward comes from its reward model, reftune's from the
  answer: the comparison is of equal sampling and update work, not of learning.
- group: reftune's group-advantage variant against TRL's GRPOTrainer (current TRL), both with the
  same reward function (reftune's answer reward), KL to the reference (beta 0.05) and 2 updates per
  batch (ppo_epochs / num_iterations).

Timing: seconds per step from step-end timestamps, skipping the first step (warm-up) and anything
after the last (evaluation, saving). Completion tokens, the stop token included: reftune counts the
tokens it generated; TRL's GRPO, the mean completion length it logs; TRL's PPO always generates the
full length (its min_new_tokens is the response length) and is credited with it. Peak memory: the
worker process's maximum resident set.

Linear layers: TRL runs the models as transformers loads them (torch's nn.Linear); reftune as
`load_policy` loads them, which on CPUs where oneDNN's fp32 products are faster uses those
(`reftune/cpu_linear.py`). `reftune_torch_linear` is reftune again with REFTUNE_CPU_LINEAR=torch,
to show how much of the ratio is the kernels and how much the rest.

TRL is a benchmark-only dependency, never reftune's: the two TRL versions live in their own virtual
environments (made under the cache folder on first use, or pass --trl-ppo-python / --trl-grpo-python).

    python benchmarks/rl_vs_trl.py [--model tiny | smollm2-135m] [--steps 6] [--questions 8] [--max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRL_VERSIONS = {"ppo": "trl==1.12.0", "group": "trl"}


# ---- the driver -------------------------------------------------------------------------------
def trl_python(kind: str, given: str | None) -> str:
    """A Python with TRL for `kind`, from the flag or a venv made once in reftune's cache folder."""
    if given:
        return given
    from reftune.model.cache import cache_dir

    venv = cache_dir() / "bench-venvs" / TRL_VERSIONS[kind].replace("=", "-")
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", TRL_VERSIONS[kind],
                        "tokenizers", "safetensors"], check=True)
    return str(python)


def run_worker(python: str, side: str, args, **environment) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false", **environment)
    command = [python, __file__, "--worker", side, "--model-dir", str(args.model_dir),
               "--steps", str(args.steps), "--questions", str(args.questions),
               "--samples", str(args.group_samples if "group" in side else 1),
               "--max-new-tokens", str(args.max_new_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_models(folder: Path, model: str, hidden: int, layers: int) -> None:
    """The policy (tiny, or the packaged SmolLM2) with its tokenizer and, for TRL's PPO, a reward and a
    value model of the policy's architecture (freshly initialised: only their cost matters here)."""
    from transformers import LlamaForSequenceClassification

    from reftune.config import TinySpec
    from reftune.model.loading import load_policy, save_pretrained
    from reftune.tasks import get_task

    if model == "tiny":
        task = get_task("arithmetic")
        texts = [task.prompt(e) + task.target(e) for e in task.load("train")[:500]]
        policy = load_policy("tiny", tiny=TinySpec(hidden_size=hidden, num_layers=layers), tokenizer_texts=texts)
    else:
        policy = load_policy(model)
    save_pretrained(policy.model, policy.tokenizer, folder / "policy")
    config = policy.model.config
    config.num_labels = 1
    for name in ("reward", "value"):
        LlamaForSequenceClassification(config).save_pretrained(folder / name)
        policy.tokenizer.save_pretrained(folder / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--questions", type=int, default=8, help="questions per step")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--group-samples", type=int, default=4, help="samples per question (group)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default="tiny", help="tiny (sized by the next two flags) or smollm2-135m")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--trl-ppo-python")
    parser.add_argument("--trl-grpo-python")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return

    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        args.model_dir = Path(scratch)
        build_models(args.model_dir, args.model, args.hidden_size, args.layers)
        results = {"settings": {"steps": args.steps, "questions_per_step": args.questions,
                                "group_samples_per_question": args.group_samples,
                                "max_new_tokens": args.max_new_tokens, "model": args.model,
                                **({"hidden_size": args.hidden_size, "layers": args.layers} if args.model == "tiny" else {}),
                                "cpu_threads": os.cpu_count()}}
        for kind, given in (("ppo", args.trl_ppo_python), ("group", args.trl_grpo_python)):
            ours = run_worker(sys.executable, f"reftune-{kind}", args)
            theirs = run_worker(trl_python(kind, given), f"trl-{kind}", args)
            plain = run_worker(sys.executable, f"reftune-{kind}", args, REFTUNE_CPU_LINEAR="torch")
            results[kind] = {"reftune": ours, "trl": theirs, "reftune_torch_linear": plain,
                             "tokens_per_s_ratio": round(ours["completion_tokens_per_s"]
                                                         / theirs["completion_tokens_per_s"], 2),
                             "peak_memory_ratio": round(ours["peak_memory_mb"] / theirs["peak_memory_mb"], 2),
                             "tokens_per_s_ratio_torch_linear": round(plain["completion_tokens_per_s"]
                                                                      / theirs["completion_tokens_per_s"], 2)}
    print(json.dumps(results, indent=1))


# ---- the workers (one side each, in a fresh process) ------------------------------------------
def side_result(step_ends: list[float], tokens_per_step: float, steps: int) -> dict:
    seconds = (step_ends[-1] - step_ends[0]) / max(1, len(step_ends) - 1)
    return {"steps": steps, "seconds_per_step": round(seconds, 3),
            "completion_tokens_per_step": round(tokens_per_step, 1),
            "completion_tokens_per_s": round(tokens_per_step / seconds, 1),
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def reftune_worker(args, estimator: str) -> dict:
    import tempfile

    from reftune.config import RLConfig
    from reftune.stages.rl import rl
    from reftune.training.tracking import read_metrics

    with tempfile.TemporaryDirectory() as output:
        rl(RLConfig(task="arithmetic", model=str(args.model_dir / "policy"), advantage_estimator=estimator,
                    questions_per_step=args.questions, num_samples_per_question=args.samples,
                    max_new_tokens=args.max_new_tokens, max_steps=args.steps, eval_every=10_000,
                    eval_limit=1, eval_max_new_tokens=1,
                    learning_rate=1e-6, kl_coef=0.05, report_to="jsonl", progress=False, output=output,
                    prompt_format="plain"))  # TRL is given the plain prompts too
        steps = [m for m in read_metrics(output) if "reward_mean" in m]
    rows = args.questions * args.samples
    tokens = sum(m["response_length"] * rows for m in steps[1:]) / max(1, len(steps) - 1)
    return side_result([m["time"] for m in steps], tokens, len(steps))


def trl_dataset(args, tokenized: bool):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from reftune.tasks import get_task

    task = get_task("arithmetic")
    examples = task.load("train")[:args.questions * (args.steps + 1)]
    prompts = [task.prompt(e) for e in examples]
    if not tokenized:
        return Dataset.from_dict({"prompt": prompts, "answer": [e.answer for e in examples]})
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir / "policy")
    return Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})


def step_timer():
    """A TRL callback keeping each optimizer step's end time and every log line."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        ends: list[float] = []
        logs: list[dict] = []

        def on_step_end(self, *_, **__):
            self.ends.append(time.time())

        def on_log(self, *_, logs=None, **__):
            self.logs.append(dict(logs or {}))
    return StepTimes()


def trl_ppo_worker(args) -> dict:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir / "policy", padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(args.model_dir / "policy")
    reference = AutoModelForCausalLM.from_pretrained(args.model_dir / "policy")
    reward = AutoModelForSequenceClassification.from_pretrained(args.model_dir / "reward")
    value = AutoModelForSequenceClassification.from_pretrained(args.model_dir / "value")
    config = PPOConfig(output_dir=str(args.model_dir / "trl-ppo-out"), per_device_train_batch_size=args.questions,
                       gradient_accumulation_steps=1, num_mini_batches=1, num_ppo_epochs=2,
                       total_episodes=args.questions * args.steps, response_length=args.max_new_tokens,
                       temperature=1.0, learning_rate=1e-6, kl_coef=0.05, vf_coef=5.0, cliprange=0.2,
                       cliprange_value=0.2, gamma=1.0, lam=0.95, stop_token="eos", num_sample_generations=0,
                       local_rollout_forward_batch_size=args.questions, report_to="none", save_strategy="no",
                       use_cpu=True, bf16=False, logging_steps=1)
    timer = step_timer()
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=reference,
                         reward_model=reward, value_model=value, train_dataset=trl_dataset(args, True),
                         callbacks=[timer])
    trainer.train()
    return side_result(timer.ends, args.questions * args.max_new_tokens, len(timer.ends))


def trl_grpo_worker(args) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from reftune.scoring.rewards import score_completions
    from reftune.tasks import get_task

    task = get_task("arithmetic")

    def answer_reward(completions, answer, **_):
        return score_completions(task, completions, answer)

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir / "policy", padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(args.model_dir / "policy")
    rows = args.questions * args.samples
    config = GRPOConfig(output_dir=str(args.model_dir / "trl-grpo-out"), per_device_train_batch_size=rows,
                        num_generations=args.samples, max_completion_length=args.max_new_tokens,
                        temperature=1.0, top_k=0, beta=0.05, num_iterations=2, learning_rate=1e-6,
                        max_steps=args.steps * 2, report_to="none", save_strategy="no", use_cpu=True,
                        bf16=False, logging_steps=1)
    timer = step_timer()
    trainer = GRPOTrainer(model=policy, reward_funcs=answer_reward, args=config, processing_class=tokenizer,
                          train_dataset=trl_dataset(args, False), callbacks=[timer])
    trainer.train()
    # num_iterations=2: each generation batch is trained on for 2 optimizer steps; one reftune step
    # (sample once, 2 PPO epochs) equals 2 of them.
    ends = timer.ends[1::2]
    lengths = [log["completions/mean_length"] for log in timer.logs if "completions/mean_length" in log]
    return side_result(ends, rows * (sum(lengths) / len(lengths) if lengths else args.max_new_tokens), len(ends))


WORKERS = {"reftune-ppo": lambda args: reftune_worker(args, "gae"),
           "reftune-group": lambda args: reftune_worker(args, "group"),
           "trl-ppo": trl_ppo_worker, "trl-group": trl_grpo_worker}

if __name__ == "__main__":
    main()
