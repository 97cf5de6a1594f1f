"""Option groups that several stages share, and the checks they share. The docstring under each
field is its `--help` text (reftune.config.options turns fields into flags and YAML keys)."""
from __future__ import annotations

from dataclasses import dataclass

from reftune.config.fields import check_fields
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
    verbose: bool = False
    """Also print the resolved config (it is always saved as config.yaml in the output folder)."""


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
    prompt_format: str = "auto"
    """plain (the authors' "Question: / Answer reasoning:" layout), chat (the question as the user's turn
    of the tokenizer's chat template, the CoT as the assistant's) or auto (chat when the model has one)."""
    system_prompt: str | None = None
    """A system prompt written before the question (a system turn in chat)."""
    few_shot: int = 0
    """Write the first N training examples with a CoT before each question (earlier turns in chat)."""


@dataclass(frozen=True)
class TinySpec:
    """Size of the `tiny` model, as ModelOptions' tiny_* options give it (their docs say what each is).
    Defaults give ~0.1M parameters: a test model, not a useful one."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    vocab_size: int = 400
    max_positions: int = 1024


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
    tiny_hidden_size: int = TinySpec.hidden_size
    """tiny only: width."""
    tiny_layers: int = TinySpec.num_layers
    """tiny only: transformer layers."""
    tiny_heads: int = TinySpec.num_heads
    """tiny only: attention heads."""
    tiny_vocab_size: int = TinySpec.vocab_size
    """tiny only: most BPE tokens fitted to the task's texts (the alphabet alone is ~100)."""

    def tiny_spec(self) -> TinySpec:
        """The size of the `tiny` model these options ask for."""
        return TinySpec(hidden_size=self.tiny_hidden_size, num_layers=self.tiny_layers, num_heads=self.tiny_heads,
                        vocab_size=self.tiny_vocab_size)


@dataclass(kw_only=True)
class SamplingOptions:
    """How completions are drawn: evaluation, sampling, the on-policy stages, and the sampler itself
    (reftune.generation.rollout.SamplingParams is these options with the samples per prompt)."""

    temperature: float = 1.0
    """Sampling temperature: 0 is greedy; the paper samples at 1.0 for RL, voting and self-training."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 keeps all (the paper)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 keeps all (the paper)."""
    max_new_tokens: int = 300
    """Longest response in tokens (the paper: prompt <= 300, prompt + completion <= 700)."""

    def check_sampling(self) -> None:
        """What the sampler can draw with: checked by the configs that sample and by SamplingParams."""
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ReftuneError(f"sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1, got "
                               f"{self.temperature}, {self.top_k}, {self.top_p}")
        require_at_least_one(self, "max_new_tokens")


@dataclass(kw_only=True)
class TrainingOptions:
    """What every training stage shares: its data, optimizer, length, dev checks and checkpoints."""

    train_split: str = "train"
    """Split trained on; a slice such as train[:-200] holds questions out for dev."""
    dev_split: str = "dev"
    """Split for greedy accuracy during training and for picking the best checkpoint; never test.
    For data without a dev split, use a held-out slice: train[-200:] with train_split train[:-200]."""
    max_train_examples: int | None = None
    """Train on the first N training examples only (all when left out)."""
    learning_rate: float = 1e-5
    """Peak AdamW lr."""
    weight_decay: float = 0.0
    """AdamW weight decay (the paper: 0)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (the paper: 1.0)."""
    micro_batch_size: int = 8
    """Rows per forward/backward pass per process (memory only: results do not depend on it)."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of storing them: less memory,
    slower steps (results do not depend on it)."""
    epochs: int = 3
    """Passes over the training set."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs when reached first; no limit when left out)."""
    max_seconds: float | None = None
    """Stop (evaluating and checkpointing first) once training has run this long, over all resumes.
    A wall-clock budget: how far it gets depends on the machine."""
    eval_every: int | None = None
    """Evaluate on dev and checkpoint every N steps (and at the end)."""
    eval_limit: int | None = None
    """Dev questions evaluated (all when left out)."""
    eval_max_new_tokens: int = 300
    """Longest greedy response during dev evaluation."""
    eval_batch_size: int | None = None
    """Dev questions decoded together (speed and memory only); default twice micro_batch_size. A small
    model decodes several times faster per question in batches of 128 than of 32 on a CPU."""
    keep_checkpoints: int = 2
    """Step checkpoints kept (the best model is kept apart, in best/)."""
    resume: bool = False
    """Continue the run in --output from its last checkpoint (only the run's length, evaluation
    cadence, reporting and gradient checkpointing may change)."""

    @property
    def dev_batch_size(self) -> int:
        """Questions per batch when decoding the dev split greedily."""
        return self.eval_batch_size or 2 * self.micro_batch_size

    def check_training(self) -> None:
        check_common(self)
        if self.dev_split.split("[")[0] == "test":
            raise ReftuneError("dev_split must not be the test split: the best checkpoint would be "
                               "chosen on the data it is judged on; use dev (or a split of train)")
        if self.resume and not self.output:
            raise ReftuneError("--resume continues the run in --output: name that folder")
        require_at_least_one(self, "micro_batch_size", "epochs", "keep_checkpoints", "eval_max_new_tokens")
        if self.eval_batch_size is not None:
            require_at_least_one(self, "eval_batch_size")
        if self.learning_rate <= 0:
            raise ReftuneError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclass(kw_only=True)
class OnPolicyOptions(TrainingOptions, SamplingOptions):
    """What every stage that samples from the policy as it trains (ReFT, Online-ST) shares."""

    num_samples_per_question: int = 1
    """Samples per question per step (the paper: 1; the group estimators need >= 2)."""
    questions_per_step: int = 32
    """Questions per step over all processes (the paper: 4 per GPU x 8 GPUs)."""
    learning_rate: float = 3e-7
    """AdamW lr, constant (the paper: 3e-7 for 7B models, 3e-6 for Galactica-125M)."""
    max_new_tokens: int = 400
    """Longest sampled response (the paper: prompt <= 300 and prompt + completion <= 700)."""
    epochs: int = 300
    """Passes over the training questions (the paper: 300; 700 for the 125M model)."""
    eval_every: int = 50
    """Evaluate on dev and checkpoint every N steps (and at the end)."""

    def check_on_policy(self) -> None:
        self.check_training()
        require_at_least_one(self, "questions_per_step", "eval_every", "num_samples_per_question")
        self.check_sampling()
        if self.temperature <= 0:
            raise ReftuneError(f"temperature must be > 0 to sample from the policy, got {self.temperature}")


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
    """What every config with a task checks, its field types first (so the checks after compare numbers)."""
    from reftune.tasks import STYLES, TASKS

    check_fields(config)
    if config.task not in TASKS:
        raise ReftuneError(f"unknown task {config.task!r}: use one of {sorted(TASKS)}")
    if config.style not in STYLES:
        raise ReftuneError(f"unknown style {config.style!r}: use one of {list(STYLES)}")
    parse_task_options(config.task_options)
    check_prompt_options(config)
    check_limits(config)
    if getattr(config, "lora_rank", 0) < 0:
        raise ReftuneError(f"lora_rank must be >= 0, got {config.lora_rank}")
    unknown = set(sinks(config.report_to)) - {"jsonl", "tensorboard", "wandb"}
    if unknown:
        raise ReftuneError(f"unknown report_to {sorted(unknown)}: use jsonl, tensorboard, wandb")


def check_prompt_options(config) -> None:
    from reftune.tasks.prompting import PROMPT_FORMATS

    if config.prompt_format not in PROMPT_FORMATS:
        raise ReftuneError(f"unknown prompt_format {config.prompt_format!r}: use one of {list(PROMPT_FORMATS)}")
    if config.few_shot < 0:
        raise ReftuneError(f"few_shot must be >= 0, got {config.few_shot}")


# Options that bound a count or a time: left out means no bound; 0 or less is refused rather than
# read as "unlimited" (a full-length run on a real model is not what a 0 asks for).
LIMIT_OPTIONS = ("max_train_examples", "max_steps", "max_seconds", "eval_limit", "limit")


def check_limits(config) -> None:
    for name in LIMIT_OPTIONS:
        value = getattr(config, name, None)
        if value is not None and value <= 0:
            raise ReftuneError(f"{name} must be >= 1 (got {value}); leave it out for no limit")


def require_at_least_one(config, *names: str) -> None:
    """Refuse a config whose named counts are below 1, naming the first."""
    for name in names:
        if getattr(config, name) < 1:
            raise ReftuneError(f"{name} must be >= 1, got {getattr(config, name)}")


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
