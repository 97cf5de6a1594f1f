"""One config dataclass per stage, built from small option groups; the docstring under each field is
its `--help` text (reftune.options turns them into flags and reads YAML)."""
from __future__ import annotations

from dataclasses import dataclass

from reftune.errors import ReftuneError


@dataclass(kw_only=True)
class RunOptions:
    output: str | None = None
    """Folder for checkpoints, metrics and the resolved config; default: a new folder under runs/."""
    seed: int = 0
    """Seeds data order, sampling and (for `tiny`) the initial weights."""
    report_to: str = "jsonl,tensorboard"
    """Comma-separated metric sinks: jsonl, tensorboard, wandb (when installed)."""
    progress: bool = True
    """Show progress bars."""


@dataclass(kw_only=True)
class TaskOptions:
    task: str = "arithmetic"
    """gsm8k, svamp, mathqa (multiple choice), mathqa-numeric or arithmetic (built in, no download)."""
    style: str = "nl"
    """nl (N-CoT) or python (P-CoT, programs executed in the sandbox)."""
    data: str | None = None
    """A data file or folder (holding train / dev / test files); default: built in or the HF hub."""
    task_options: str = ""
    """Knobs of the task as key=value,key=value (arithmetic: max_number, min_steps, max_steps,
    group_probability, seed)."""


@dataclass(kw_only=True)
class ModelOptions:
    model: str = "tiny"
    """A HF hub id, a local model folder, smollm2-135m (packaged) or tiny (random weights, for tests)."""
    lora_rank: int = 0
    """LoRA rank; 0 trains all weights."""
    lora_alpha: float | None = None
    """LoRA scaling numerator; default 2 * rank."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    tiny_hidden_size: int = 64
    """tiny only: width."""
    tiny_layers: int = 2
    """tiny only: transformer layers."""
    tiny_heads: int = 4
    """tiny only: attention heads."""
    tiny_vocab_size: int = 400
    """tiny only: most BPE tokens fitted to the task's texts."""


@dataclass(kw_only=True)
class SamplingOptions:
    temperature: float = 0.0
    """0 is greedy (top-1 accuracy); the paper samples at 1.0 for voting."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 keeps all."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 keeps all."""
    max_new_tokens: int = 300
    """Longest response in tokens (the paper: prompt <= 300, prompt + completion <= 700)."""
    num_samples: int = 1
    """Samples per question (K of vote@K and pass@k)."""
    batch_size: int = 16
    """Questions per generation batch (each with num_samples rows)."""


def _check_common(config) -> None:
    from reftune.tasks import STYLES, TASKS

    if config.task not in TASKS:
        raise ReftuneError(f"unknown task {config.task!r}: use one of {sorted(TASKS)}")
    if config.style not in STYLES:
        raise ReftuneError(f"unknown style {config.style!r}: use one of {list(STYLES)}")
    parse_task_options(config.task_options)
    if config.lora_rank < 0:
        raise ReftuneError(f"lora_rank must be >= 0, got {config.lora_rank}")
    unknown = set(sinks(config.report_to)) - {"jsonl", "tensorboard", "wandb"}
    if unknown:
        raise ReftuneError(f"unknown report_to {sorted(unknown)}: use jsonl, tensorboard, wandb")


def require_at_least_one(config, *names: str) -> None:
    """Refuse a config whose named counts are below 1, naming the first."""
    for name in names:
        if getattr(config, name) < 1:
            raise ReftuneError(f"{name} must be >= 1, got {getattr(config, name)}")


def check_training_run(config) -> None:
    """What every training stage needs: checkpoints chosen off the test split; --resume with --output."""
    if config.dev_split.split("[")[0] == "test":
        raise ReftuneError("dev_split must not be the test split: the best checkpoint would be "
                           "chosen on the data it is judged on; use dev (or a split of train)")
    if config.resume and not config.output:
        raise ReftuneError("--resume continues the run in --output: name that folder")


def parse_task_options(text: str) -> dict:
    """"max_number=10,max_steps=3" -> {"max_number": 10, "max_steps": 3}; numbers become numbers.

    >>> parse_task_options("max_number=10, group_probability=0.2")
    {'max_number': 10, 'group_probability': 0.2}
    """
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ReftuneError(f"task_options: {item!r} is not key=value (e.g. max_number=10,max_steps=3)")
        for kind in (int, float):
            try:
                options[key.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key.strip()] = value.strip()
    return options


def sinks(report_to: str) -> list[str]:
    return [name.strip() for name in report_to.split(",") if name.strip()]


@dataclass(kw_only=True)
class SFTConfig(TaskOptions, ModelOptions, RunOptions):
    """Warm-up (or full) SFT on the task's gold CoTs, loss on target tokens only."""

    train_split: str = "train"
    """Split trained on; a slice such as train[:-200] holds questions out for dev."""
    dev_split: str = "dev"
    """Split for greedy accuracy during training and for picking the best checkpoint; never test.
    For data without a dev split, use a held-out slice: train[-200:] with train_split train[:-200]."""
    max_train_examples: int | None = None
    """Train on the first N examples only."""
    learning_rate: float = 1e-5
    """Peak AdamW lr. Paper warm-up: 1e-5 (7B models), 2e-5 (Galactica-125M)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    epochs: int = 3
    """Passes over the training set (the paper's warm-up: 2 on GSM8K; 10 for the 125M model)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs when reached first)."""
    max_seconds: float | None = None
    """Stop (evaluating and checkpointing first) once training has run this long: a compute budget."""
    batch_size: int = 48
    """Examples per optimizer step over all processes (the paper: 48)."""
    micro_batch_size: int = 8
    """Examples per forward pass per process; batch_size / (micro_batch_size * processes) is the
    number of gradient accumulation steps, and must be a whole number."""
    warmup_ratio: float = 0.1
    """Fraction of the steps with a linearly rising lr, then linear decay to 0 (the paper)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (the paper: 1.0)."""
    max_length: int = 700
    """Longest prompt + target in tokens; longer examples are skipped and counted."""
    eval_every: int | None = None
    """Evaluate and checkpoint every N steps; default: at the end of each epoch."""
    eval_limit: int | None = 200
    """Dev questions evaluated (all when empty)."""
    eval_max_new_tokens: int = 300
    """Longest greedy response during dev evaluation."""
    keep_checkpoints: int = 2
    """Step checkpoints kept (the best model is kept apart, in best/)."""
    resume: bool = False
    """Continue the run in --output from its last checkpoint."""

    def __post_init__(self):
        _check_common(self)
        check_training_run(self)
        require_at_least_one(self, "batch_size", "micro_batch_size", "epochs", "max_length", "keep_checkpoints")
        if self.learning_rate <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ReftuneError("need learning_rate > 0 and 0 <= warmup_ratio < 1")


@dataclass(kw_only=True)
class EvalConfig(TaskOptions, ModelOptions, RunOptions, SamplingOptions):
    """Accuracy of a model on a split: greedy top-1, or vote@K and pass@k over K samples."""

    split: str = "test"
    """Split evaluated."""
    limit: int | None = None
    """Evaluate the first N questions only."""

    def __post_init__(self):
        _check_common(self)
        if self.num_samples < 1 or self.batch_size < 1:
            raise ReftuneError("num_samples and batch_size must be >= 1")
        if self.num_samples > 1 and self.temperature == 0:
            raise ReftuneError("several samples per question need --temperature > 0 (greedy gives "
                               "the same answer K times); the paper votes at 1.0")


@dataclass(kw_only=True)
class SampleConfig(EvalConfig):
    """Sample K CoTs per question and write them with their answers and rewards (JSONL)."""

    split: str = "train"
    """Split sampled."""
    temperature: float = 1.0
    """Sampling temperature (the paper: 1.0)."""
    num_samples: int = 10
    """Samples per question."""


@dataclass(kw_only=True)
class RLConfig(TaskOptions, ModelOptions, RunOptions):
    """ReFT's RL stage: PPO from the warm-up model, reward from the final answer, KL to the warm-up."""

    train_split: str = "train"
    """Questions sampled during RL; a slice such as train[:-200] holds some out for dev."""
    dev_split: str = "dev"
    """Split for greedy accuracy and for picking the best checkpoint; never test."""
    max_train_examples: int | None = None
    """Use the first N training questions only."""
    advantage_estimator: str = "gae"
    """gae (value head, the paper) or group (K samples per question normalised in their group)."""
    num_samples_per_question: int = 1
    """Samples per question per step (the paper: 1; group needs >= 2)."""
    questions_per_step: int = 32
    """Questions per step over all processes (the paper: 4 per GPU x 8 GPUs)."""
    micro_batch_size: int = 8
    """Rows per forward/backward pass per process (memory only: results do not depend on it)."""
    ppo_epochs: int = 2
    """Passes over each rollout batch (the paper: 2, one minibatch per process)."""
    learning_rate: float = 3e-7
    """AdamW lr, constant (the paper: 3e-7 for 7B models, 3e-6 for Galactica-125M)."""
    value_head_learning_rate: float | None = None
    """lr of the value head alone; default: learning_rate (the paper). A fresh head on a small model
    learns slowly at a policy's lr, and until it learns, GAE gives early tokens little credit."""
    weight_decay: float = 0.0
    """AdamW weight decay (the paper: 0)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (the paper: 1.0)."""
    kl_coef: float | None = None
    """beta of the KL penalty; default 0.05 for N-CoT, 0.01 for P-CoT (authors' scripts)."""
    kl_estimator: str = "k1"
    """k1 (the paper), k2 or k3."""
    kl_in: str = "reward"
    """reward: -beta * KL per token in the reward (the paper); loss: beta * KL as a loss term."""
    gamma: float = 1.0
    """GAE discount (the paper: 1.0)."""
    lam: float = 0.95
    """GAE lambda (the paper: 0.95)."""
    clip_range: float = 0.2
    """PPO policy ratio clip (the paper: 0.2)."""
    value_clip_range: float = 0.2
    """Value clip around the old values (the paper: 0.2)."""
    vf_coef: float = 5.0
    """Weight of the value loss (the paper: 5; no entropy bonus)."""
    whiten_advantages: bool = True
    """Whiten advantages over all processes, mean removed (the paper)."""
    temperature: float = 1.0
    """Sampling temperature (the paper: 1.0)."""
    top_k: int = 0
    """Sampling top-k; 0 keeps all (the paper)."""
    top_p: float = 1.0
    """Sampling nucleus mass (the paper: 1.0)."""
    max_new_tokens: int = 400
    """Longest sampled response (the paper: prompt <= 300 and prompt + completion <= 700)."""
    epochs: int = 300
    """Passes over the training questions (the paper: 300; 700 for the 125M model)."""
    max_steps: int | None = None
    """Stop after this many steps (overrides epochs when reached first)."""
    max_seconds: float | None = None
    """Stop (evaluating and checkpointing first) once training has run this long: a compute budget."""
    eval_every: int = 50
    """Evaluate on dev and checkpoint every N steps (and at the end)."""
    eval_limit: int | None = 200
    """Dev questions evaluated (all when empty)."""
    eval_max_new_tokens: int = 300
    """Longest greedy response during dev evaluation."""
    max_kl: float = 10.0
    """Stop (with a report) when the mean sequence KL to the reference exceeds this: a runaway policy."""
    keep_checkpoints: int = 2
    """Step checkpoints kept (the best model is kept apart, in best/)."""
    resume: bool = False
    """Continue the run in --output from its last checkpoint."""

    def __post_init__(self):
        from reftune.algorithms.advantages import ADVANTAGE_ESTIMATORS

        _check_common(self)
        if self.kl_coef is None:
            self.kl_coef = 0.01 if self.style == "python" else 0.05
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ReftuneError(f"unknown advantage_estimator {self.advantage_estimator!r}: "
                               f"use one of {sorted(ADVANTAGE_ESTIMATORS)}")
        if self.advantage_estimator == "group" and self.num_samples_per_question < 2:
            raise ReftuneError("the group estimator compares samples of a question: set "
                               "num_samples_per_question >= 2 (e.g. 4)")
        if self.kl_estimator not in ("k1", "k2", "k3") or self.kl_in not in ("reward", "loss"):
            raise ReftuneError("kl_estimator must be k1, k2 or k3 and kl_in reward or loss")
        check_training_run(self)
        require_at_least_one(self, "questions_per_step", "micro_batch_size", "ppo_epochs", "epochs", "eval_every",
                             "num_samples_per_question", "keep_checkpoints", "max_new_tokens")
        if self.learning_rate <= 0 or self.kl_coef < 0 or self.temperature <= 0:
            raise ReftuneError("need learning_rate > 0, kl_coef >= 0 and temperature > 0")


@dataclass(kw_only=True)
class DemoConfig(RunOptions):
    """The whole method on the built-in arithmetic task: base model, warm-up SFT, then ReFT against
    continued SFT with the same compute, both judged on a held-out test split."""

    model: str = "arithmetic-base"
    """arithmetic-base: a tiny model pretrained by reftune on generated text (built once, cached);
    or any model name that --model takes elsewhere (a folder, a hub id, smollm2-135m)."""
    quick: bool = False
    """A smoke run in about 2 minutes (smaller model and data): it shows the pipeline, it proves nothing."""
    task_options: str = "max_number=5,min_steps=2,max_steps=3"
    """The arithmetic generator's knobs (see `reftune sft --help`), for the base corpus and every stage."""
    train_questions: int = 400
    """Training questions, each with one gold CoT (the paper's setting: one annotated path)."""
    dev_questions: int = 100
    """Dev questions: checkpoints are chosen on them."""
    test_questions: int = 300
    """Held-out test questions: the comparison is made on them."""
    warmup_epochs: int = 12
    """Warm-up SFT epochs: to the plateau of its dev accuracy, so that more SFT has little left to gain."""
    sft_learning_rate: float = 1e-3
    """lr of the warm-up and of the continued-SFT branch."""
    branch_seconds: float = 150.0
    """Compute given to each branch after the warm-up (wall-clock seconds on this machine)."""
    rl_learning_rate: float = 1e-4
    """lr of the ReFT branch's policy."""
    advantage_estimator: str = "gae"
    """The ReFT branch's advantages: gae (the paper, value head) or group (no value head)."""
    value_head_learning_rate: float = 3e-3
    """lr of the ReFT branch's value head (a fresh head on a small model learns slowly otherwise)."""
    num_samples_per_question: int = 4
    """ReFT samples per question per step."""
    questions_per_step: int = 16
    """ReFT questions per step."""
    vote_samples: int = 8
    """Samples per test question for majority voting (temperature 1)."""
    max_new_tokens: int = 160
    """Longest response when sampling and evaluating."""

    def __post_init__(self):
        require_at_least_one(self, "train_questions", "dev_questions", "test_questions", "warmup_epochs",
                             "vote_samples", "num_samples_per_question", "questions_per_step", "max_new_tokens")
        if self.branch_seconds <= 0:
            raise ReftuneError("branch_seconds must be > 0")


