"""Option groups that several stages share, and the checks they share. The docstring under each
field is its `--help` text (reftune.options turns fields into flags and YAML keys)."""
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


@dataclass(kw_only=True)
class OnPolicyOptions:
    """What every stage that samples from the policy as it trains (ReFT, Online-ST) shares."""

    train_split: str = "train"
    """Questions sampled during training; a slice such as train[:-200] holds some out for dev."""
    dev_split: str = "dev"
    """Split for greedy accuracy and for picking the best checkpoint; never test."""
    max_train_examples: int | None = None
    """Use the first N training questions only."""
    num_samples_per_question: int = 1
    """Samples per question per step (the paper: 1; the group estimator needs >= 2)."""
    questions_per_step: int = 32
    """Questions per step over all processes (the paper: 4 per GPU x 8 GPUs)."""
    micro_batch_size: int = 8
    """Rows per forward/backward pass per process (memory only: results do not depend on it)."""
    learning_rate: float = 3e-7
    """AdamW lr, constant (the paper: 3e-7 for 7B models, 3e-6 for Galactica-125M)."""
    weight_decay: float = 0.0
    """AdamW weight decay (the paper: 0)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (the paper: 1.0)."""
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
    keep_checkpoints: int = 2
    """Step checkpoints kept (the best model is kept apart, in best/)."""
    resume: bool = False
    """Continue the run in --output from its last checkpoint."""

    def check_on_policy(self) -> None:
        check_common(self)
        check_training_run(self)
        require_at_least_one(self, "questions_per_step", "micro_batch_size", "epochs", "eval_every",
                             "num_samples_per_question", "keep_checkpoints", "max_new_tokens")
        if self.learning_rate <= 0 or self.temperature <= 0:
            raise ReftuneError("need learning_rate > 0 and temperature > 0")


@dataclass(kw_only=True)
class TrainingSamplesOptions:
    """CoTs sampled for the training questions, once, before training (Offline-ST, the verifier)."""

    sampler: str | None = None
    """The model that samples them: the warm-up checkpoint (the paper). Needed unless --samples."""
    samples: str | None = None
    """A JSONL of CoTs already sampled for the train split (from `reftune sample`, or the
    samples.jsonl of an earlier run) to use instead of sampling."""
    num_samples: int = 100
    """CoTs sampled per training question (the paper: 100)."""
    sample_temperature: float = 1.0
    """Sampling temperature (the paper: 1.0)."""
    sample_max_new_tokens: int = 300
    """Longest sampled CoT in tokens."""
    sample_batch_size: int = 16
    """Questions per sampling batch (each with num_samples rows)."""

    def check_samples(self) -> None:
        if not self.sampler and not self.samples:
            raise ReftuneError("name the model that samples the training CoTs (--sampler, the warm-up "
                               "checkpoint) or a JSONL of samples (--samples)")
        require_at_least_one(self, "num_samples", "sample_max_new_tokens", "sample_batch_size")
        if self.sample_temperature <= 0:
            raise ReftuneError("sample_temperature must be > 0: greedy decoding gives one CoT per question")


def check_common(config) -> None:
    from reftune.tasks import STYLES, TASKS

    if config.task not in TASKS:
        raise ReftuneError(f"unknown task {config.task!r}: use one of {sorted(TASKS)}")
    if config.style not in STYLES:
        raise ReftuneError(f"unknown style {config.style!r}: use one of {list(STYLES)}")
    parse_task_options(config.task_options)
    if getattr(config, "lora_rank", 0) < 0:
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
