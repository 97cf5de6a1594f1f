"""The configs of the method's own stages: warm-up SFT, RL, evaluation and sampling, the demo."""
from __future__ import annotations

from dataclasses import dataclass

from reftune.errors import ReftuneError
from reftune.config.groups import (ModelOptions, OnPolicyOptions, RunOptions, SamplingOptions, TaskOptions,
                                   check_common, check_training_run, require_at_least_one)


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
        check_common(self)
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
    mode: str = "auto"
    """top1 (greedy), vote (majority of K samples), rerank (the sample a --verifier scores highest,
    with vote and the any-sample-right upper bound beside it); auto: top1 when greedy, else vote."""
    verifier: str | None = None
    """A verifier folder (from `reftune verifier`), for --mode rerank."""

    def __post_init__(self):
        check_common(self)
        if self.num_samples < 1 or self.batch_size < 1:
            raise ReftuneError("num_samples and batch_size must be >= 1")
        if self.mode not in ("auto", "top1", "vote", "rerank"):
            raise ReftuneError(f"unknown mode {self.mode!r}: use top1, vote, rerank or auto")
        if self.mode == "auto":
            self.mode = "top1" if self.temperature == 0 else "vote"
        if self.mode == "top1" and (self.temperature != 0 or self.num_samples != 1):
            raise ReftuneError("--mode top1 is greedy: leave --temperature at 0 and --num-samples at 1")
        if self.mode == "rerank" and not self.verifier:
            raise ReftuneError("--mode rerank needs --verifier (a folder written by `reftune verifier`)")
        if self.mode in ("vote", "rerank") and self.temperature == 0:
            raise ReftuneError(f"--mode {self.mode} chooses among K samples: set --temperature > 0 "
                               f"(the paper: 1.0) and --num-samples K")
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
class RLConfig(OnPolicyOptions, TaskOptions, ModelOptions, RunOptions):
    """ReFT's RL stage: PPO from the warm-up model, reward from the final answer, KL to the warm-up."""

    advantage_estimator: str = "gae"
    """gae (value head, the paper) or group (K samples per question normalised in their group)."""
    ppo_epochs: int = 2
    """Passes over each rollout batch (the paper: 2, one minibatch per process)."""
    value_head_learning_rate: float | None = None
    """lr of the value head alone; default: learning_rate (the paper). A fresh head on a small model
    learns slowly at a policy's lr, and until it learns, GAE gives early tokens little credit."""
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
    max_kl: float = 10.0
    """Stop (with a report) when the mean sequence KL to the reference exceeds this: a runaway policy."""

    def __post_init__(self):
        from reftune.algorithms.advantages import ADVANTAGE_ESTIMATORS

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
        self.check_on_policy()
        require_at_least_one(self, "ppo_epochs")
        if self.kl_coef < 0:
            raise ReftuneError("need kl_coef >= 0")


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
    train_questions: int = 800
    """Training questions, each with one gold CoT (the paper's setting: one annotated path). 800 x 6
    epochs costs the warm-up what 400 x 12 did, and on dev (seeds 0-2) the branches' picks scored
    ReFT 37-45% against continued SFT's 29-31% (400 x 12: 24-33.5% against 19.5-26.5%)."""
    dev_questions: int = 200
    """Dev questions (the arithmetic task's whole dev split): the branches choose their checkpoints on
    them. With 100, a pick's noise (about 4 points) was as large as the effect being measured."""
    test_questions: int = 500
    """Held-out test questions (the arithmetic task's whole test split): the comparison is made on them."""
    warmup_epochs: int = 6
    """Warm-up SFT epochs (RECIPE.md's ReFT starts from a fixed warm-up epoch too): the branches start
    from the last one."""
    sft_learning_rate: float | None = None
    """lr of the warm-up and of the continued-SFT branch; default 1e-3 for arithmetic-base (a tiny
    model trained from scratch), 2e-5 for a pretrained --model (the paper's for Galactica-125M)."""
    branch_seconds: float = 200.0
    """Compute given to each branch after the warm-up (wall-clock seconds on this machine). At 150 s,
    ReFT's best dev checkpoint came in the last third of its run in 3 seeds of 3, continued SFT's
    within its first 250 steps of about 900 (it overfits the single CoTs)."""
    rl_learning_rate: float | None = None
    """lr of the ReFT branch's policy; default 1e-4 for arithmetic-base, 3e-6 for a pretrained
    --model (the paper's for Galactica-125M)."""
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
    all_methods: bool = False
    """Also run the paper's baselines, Offline-ST and Online-ST, on the same budget, train a verifier,
    and compare all four methods by top-1, vote and rerank (about twice the demo's time)."""
    self_training_samples: int = 8
    """--all-methods: CoTs sampled per training question by the warm-up model, for Offline-ST and the
    verifier (the paper: 100)."""
    verifier_learning_rate: float = 1e-4
    """--all-methods: lr of the verifier, initialised from the warm-up model."""

    def __post_init__(self):
        require_at_least_one(self, "self_training_samples", "train_questions", "dev_questions", "test_questions", "warmup_epochs",
                             "vote_samples", "num_samples_per_question", "questions_per_step", "max_new_tokens")
        if self.branch_seconds <= 0:
            raise ReftuneError("branch_seconds must be > 0")
        from_scratch = self.model == "arithmetic-base"
        if self.sft_learning_rate is None:
            self.sft_learning_rate = 1e-3 if from_scratch else 2e-5
        if self.rl_learning_rate is None:
            self.rl_learning_rate = 1e-4 if from_scratch else 3e-6
