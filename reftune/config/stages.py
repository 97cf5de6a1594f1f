"""The configs of the method's own stages: warm-up SFT, RL, evaluation and sampling, the demo."""
from __future__ import annotations

from dataclasses import dataclass

from reftune.config.fields import check_fields
from reftune.errors import ReftuneError, check_choice
from reftune.config.groups import (ModelOptions, OnPolicyOptions, RunOptions, SamplingOptions, TaskOptions,
                                   TrainingOptions, check_common, check_limits, require_at_least_one)


@dataclass(kw_only=True)
class SFTConfig(TrainingOptions, TaskOptions, ModelOptions, RunOptions):
    """Warm-up (or full) SFT on the task's gold CoTs, loss on target tokens only."""

    learning_rate: float = 1e-5
    """Peak AdamW lr. Paper warm-up: 1e-5 (7B models), 2e-5 (Galactica-125M)."""
    epochs: int = 3
    """Passes over the training set (the paper's warm-up: 2 on GSM8K; 10 for the 125M model)."""
    batch_size: int = 48
    """Examples per optimizer step over all processes (the paper: 48)."""
    micro_batch_size: int = 8
    """Examples per forward pass per process; batch_size / (micro_batch_size * processes) is the
    number of gradient accumulation steps, and must be a whole number."""
    warmup_ratio: float = 0.1
    """Fraction of the steps with a linearly rising lr, then linear decay to 0 (the paper)."""
    max_length: int = 700
    """Longest prompt + target in tokens; longer examples are skipped and counted."""
    check_cots: bool = False
    """Drop training examples whose gold CoT fails `reftune check` (a wrong final answer, a failing
    program, or a wrongly stated arithmetic step), and say how many and why."""

    def __post_init__(self):
        self.check_training()
        require_at_least_one(self, "batch_size", "max_length")
        if not 0 <= self.warmup_ratio < 1:
            raise ReftuneError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass(kw_only=True)
class EvalConfig(TaskOptions, ModelOptions, RunOptions, SamplingOptions):
    """Accuracy of a model on a split: greedy top-1, or vote@K and pass@k over K samples."""

    temperature: float = 0.0
    """0 is greedy (top-1 accuracy); the paper samples at 1.0 for voting."""
    num_samples: int = 1
    """Samples per question (K of vote@K and pass@k)."""
    batch_size: int = 16
    """Questions per generation batch (each with num_samples rows)."""
    split: str = "test"
    """Split evaluated."""
    limit: int | None = None
    """Evaluate the first N questions only."""
    mode: str = "auto"
    """top1 (greedy), vote (majority of K samples), rerank (the sample a --verifier scores highest,
    with vote and the any-sample-right upper bound beside it); auto: top1 when greedy, else vote."""
    verifier: str | None = None
    """A verifier folder (from `reftune verifier`), for --mode rerank."""
    temperatures: str | None = None
    """Choose the sampling temperature on dev: comma-separated candidates (e.g. 0.3,0.5,0.7,1.0), each
    drawing --num-samples per question on --dev-split; the one with the best vote@K samples --split."""
    dev_split: str = "dev"
    """Split the --temperatures are tried on; never the evaluated split."""
    dev_limit: int | None = None
    """Try the --temperatures on the first N dev questions only."""

    def __post_init__(self):
        check_common(self)
        require_at_least_one(self, "num_samples", "batch_size")
        self.check_sampling()
        if self.temperatures is not None:
            self.temperature = check_temperatures(self)
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


def candidate_temperatures(text: str) -> list[float]:
    """ "0.3, 0.7,1" -> [0.3, 0.7, 1.0], or a clear error."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ReftuneError(f"temperatures: {text!r} is not a comma-separated list of numbers (e.g. 0.3,0.7,1.0)") from None
    if len(values) < 2 or min(values) <= 0:
        raise ReftuneError(f"temperatures: give two or more values > 0 to choose among, got {text!r}")
    return values


def check_temperatures(config: EvalConfig) -> float:
    """Checks --temperatures; returns the first candidate, which stands in until dev has chosen."""
    values = candidate_temperatures(config.temperatures)
    if config.num_samples < 2:
        raise ReftuneError("--temperatures chooses the temperature that votes best: set --num-samples K >= 2")
    if config.dev_split.split("[")[0] == config.split.split("[")[0]:
        raise ReftuneError(f"--dev-split {config.dev_split!r} is the evaluated split: the temperature would be "
                           f"chosen on the data it is judged on")
    return values[0]


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
    """gae (value head, the paper); or, with K >= 2 samples per question and no value head: group
    (GRPO: group mean and std), dr_grpo (group mean, no std), rloo (leave-one-out mean),
    reinforce_baseline (group mean, batch std; REINFORCE++-baseline)."""
    loss_aggregation: str = "seq_mean_token_mean"
    """How the policy's token losses become the step's loss: seq_mean_token_mean (each sample's mean
    over its tokens, then the mean over samples: the ReFT authors' code, and GRPO's), token_mean (the
    mean over all tokens: DAPO), seq_mean_token_sum_norm (Dr. GRPO: token sums over max_new_tokens)."""
    value_loss_aggregation: str = "seq_mean_token_mean"
    """The same for the value loss (with gae): seq_mean_token_mean is the ReFT authors' code."""
    clip_range_high: float | None = None
    """Upper clip of the ratio for positive advantages (DAPO's clip-higher, e.g. 0.28); default clip_range."""
    dual_clip: float | None = None
    """c > 1 caps the loss of negative-advantage tokens at c * |A| (dual-clip PPO, e.g. 3); off when left out."""
    importance_sampling: str = "token"
    """token (PPO's per-token ratio) or sequence (GSPO: one ratio per sample, exp of its mean log-ratio)."""
    dynamic_sampling: bool = False
    """DAPO: drop questions whose samples all got the same reward (no signal) and sample more questions
    to fill the step, for at most max_dynamic_sampling_rounds extra rounds."""
    max_dynamic_sampling_rounds: int = 3
    """Extra sampling rounds a step may take to fill itself with informative questions."""
    mask_truncated: bool = False
    """No loss on completions cut at max_new_tokens (DAPO's overlong filtering; TRL mask_truncated_completions)."""
    ppo_epochs: int = 2
    """Passes over each rollout batch (the paper: 2, one minibatch per process)."""
    value_head_learning_rate: float | None = None
    """lr of the value head alone; default: learning_rate (the paper). A fresh head on a small model
    learns slowly at a policy's lr, and until it learns, GAE gives early tokens little credit."""
    critic_warmup_steps: int = 0
    """The first N steps train the value head alone on their rollouts, and the policy waits (verl's
    critic_warmup): a fresh head values every state at 0, so GAE gives a response's early tokens
    almost no credit and whitening pushes them all down until it learns. They count in max_steps."""
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
    log_rollouts_every: int | None = 10
    """Every N steps, append the step's completions for up to rollouts_per_step questions, with their
    answers and rewards, to rollouts.jsonl (`reftune review` shows them); never when left out."""
    rollouts_per_step: int = 4
    """Questions per logged step in rollouts.jsonl (all their samples), which bounds the file's size."""

    def __post_init__(self):
        if self.kl_coef is None:
            self.kl_coef = 0.01 if self.style == "python" else 0.05
        self.check_on_policy()
        require_at_least_one(self, "ppo_epochs", "max_dynamic_sampling_rounds")
        check_rl_variant(self)


def check_rl_variant(config: RLConfig) -> None:
    """Each RL option names an entry of its table, and the combination can work; else one line. The
    checks are the algorithms' own, made here before anything is written."""
    from reftune.algorithms.advantages import ADVANTAGE_ESTIMATORS, VALUE_HEAD_ESTIMATORS, require_groups
    from reftune.algorithms.losses import (IMPORTANCE_SAMPLING_LEVELS, KL_ESTIMATORS, LOSS_AGGREGATIONS,
                                           check_dual_clip)

    for name, value, table in (("advantage_estimator", config.advantage_estimator, ADVANTAGE_ESTIMATORS),
                               ("loss_aggregation", config.loss_aggregation, LOSS_AGGREGATIONS),
                               ("value_loss_aggregation", config.value_loss_aggregation, LOSS_AGGREGATIONS),
                               ("importance_sampling", config.importance_sampling, IMPORTANCE_SAMPLING_LEVELS),
                               ("kl_estimator", config.kl_estimator, KL_ESTIMATORS), ("kl_in", config.kl_in, ("reward", "loss"))):
        check_choice(value, table, name)
    critic_free = config.advantage_estimator not in VALUE_HEAD_ESTIMATORS
    if critic_free:
        require_groups(config.num_samples_per_question, f"the {config.advantage_estimator} estimator")
    if config.dynamic_sampling:
        require_groups(config.num_samples_per_question, "dynamic_sampling")
    if config.importance_sampling == "sequence" and not critic_free:
        raise ReftuneError("importance_sampling: sequence gives one ratio per sample, while gae gives every token "
                           "its own advantage: use a group estimator (e.g. group) with it, or importance_sampling: token")
    check_dual_clip(config.dual_clip)
    if config.clip_range_high is not None and config.clip_range_high < 0:
        raise ReftuneError(f"clip_range_high must be >= 0, got {config.clip_range_high}")
    if config.kl_coef < 0:
        raise ReftuneError(f"kl_coef must be >= 0, got {config.kl_coef}")
    if config.critic_warmup_steps < 0:
        raise ReftuneError(f"critic_warmup_steps must be >= 0, got {config.critic_warmup_steps}")
    if config.critic_warmup_steps and critic_free:
        raise ReftuneError(f"critic_warmup_steps warms up the value head, and the {config.advantage_estimator} "
                           f"estimator has none: use it with advantage_estimator gae")


@dataclass(kw_only=True)
class DemoConfig(RunOptions):
    """The whole method on the built-in arithmetic task: base model, warm-up SFT, then ReFT against
    continued SFT with the same compute, both judged on a held-out test split."""

    model: str = "arithmetic-base"
    """arithmetic-base: a tiny model pretrained by reftune on generated text (built once, cached);
    or any model name that --model takes elsewhere (a folder, a hub id, smollm2-135m)."""
    quick: bool = False
    """A smoke run in about 2 minutes (smaller model and data): it shows the pipeline, it proves nothing."""
    build_base: bool = False
    """Build the arithmetic-base model on this machine (the longest part of a first run) instead of
    copying the one packaged with reftune, which the same recipe built; a base built here stays cached."""
    task_options: str = "max_number=5,min_steps=2,max_steps=3"
    """The arithmetic generator's knobs (see `reftune sft --help`), for the base corpus and every stage."""
    train_questions: int = 800
    """Training questions, each with one gold CoT (the paper's setting: one annotated path)."""
    dev_questions: int = 500
    """Dev questions: the branches choose their checkpoints on them (on 200, a branch's dev curve moved
    5-10 points between checkpoints and picked noise)."""
    test_questions: int = 1000
    """Held-out test questions: the comparison is made on them, with a paired 95% interval."""
    warmup_epochs: int = 6
    """Warm-up SFT epochs (the paper's ReFT starts from a fixed warm-up epoch too): the branches start
    from the last one."""
    sft_learning_rate: float | None = None
    """lr of the warm-up (and, with --all-methods, of Offline-ST and Online-ST); default 1e-3 for
    arithmetic-base (a tiny model trained from scratch), 2e-5 for a pretrained --model (the paper's for
    Galactica-125M)."""
    continued_sft_learning_rate: float | None = None
    """lr of the continued-SFT branch; default 3e-4 for arithmetic-base (chosen on dev among 1e-4, 3e-4,
    1e-3 and 3e-3: docs/demo.md), the warm-up's lr for a pretrained --model."""
    rl_steps: int = 60
    """Steps of the ReFT branch. The continued-SFT branch (and, with --all-methods, each baseline) gets
    the steps that cost the same compute, counted in forward-pass rows (see the demo's docstring), so
    the comparison is the same on every machine."""
    max_seconds: float | None = None
    """Also stop each branch after this many seconds (a wall-clock cap: the table then depends on the
    machine's speed); no cap when left out."""
    rl_learning_rate: float | None = None
    """lr of the ReFT branch's policy; default 1e-4 for arithmetic-base, 3e-6 for a pretrained
    --model (the paper's for Galactica-125M)."""
    advantage_estimator: str = RLConfig.advantage_estimator
    """The ReFT branch's advantage estimator, any that `reftune rl` takes (gae, the paper's, trains a value
    head; the group estimators need num_samples_per_question >= 2)."""
    value_head_learning_rate: float = 3e-3
    """lr of the ReFT branch's value head (a fresh head on a small model learns slowly otherwise)."""
    critic_warmup_steps: int = 5
    """With gae: the ReFT branch's first N steps train the value head alone (chosen on dev among 0, 5
    and 10). They count among rl_steps, so continued SFT's budget is unchanged."""
    num_samples_per_question: int = 4
    """ReFT samples per question per step."""
    rl_temperature: float = 0.5
    """ReFT's sampling temperature during RL (the paper's 1.0 on natural-language CoTs): the tiny model's
    samples at 1.0 slip in their arithmetic often enough to erode its greedy answers; chosen on dev
    among 1.0, 0.7 and 0.5 (docs/demo.md)."""
    lam: float = 1.0
    """ReFT's GAE lambda (the paper's 0.95): the built-in base's tokens are short pieces of text, so a
    response is 50-80 tokens, and with 0.95 its first tokens would get 2-8% of the answer's credit while
    the value head still explains little; chosen on dev among 0.95 and 1.0 (docs/demo.md)."""
    questions_per_step: int = 16
    """ReFT questions per step."""
    vote_samples: int = 8
    """Samples per test question for majority voting."""
    vote_questions: int = 200
    """Test questions (the first N) that majority voting is scored on: each costs vote_samples greedy
    passes, so voting on all test questions would take longer than the training; top-1 and the
    verdict use every test question."""
    vote_temperature: float = 0.6
    """Their sampling temperature (chosen on dev among 0.3, 0.6 and 1.0: benchmarks/voting.py)."""
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
        check_fields(self)
        require_at_least_one(self, "self_training_samples", "train_questions", "dev_questions", "test_questions", "warmup_epochs",
                             "vote_samples", "vote_questions", "num_samples_per_question", "questions_per_step", "max_new_tokens")
        require_at_least_one(self, "rl_steps")
        if not 0 <= self.critic_warmup_steps < self.rl_steps:
            raise ReftuneError(f"critic_warmup_steps must be >= 0 and below rl_steps ({self.rl_steps}), "
                               f"got {self.critic_warmup_steps}")
        check_limits(self)
        if self.vote_temperature <= 0:
            raise ReftuneError(f"vote_temperature must be > 0 to draw different samples, got {self.vote_temperature}")
        from_scratch = self.model == "arithmetic-base"
        if self.sft_learning_rate is None:
            self.sft_learning_rate = 1e-3 if from_scratch else 2e-5
        if self.continued_sft_learning_rate is None:
            self.continued_sft_learning_rate = 3e-4 if from_scratch else self.sft_learning_rate
        if self.rl_learning_rate is None:
            self.rl_learning_rate = 1e-4 if from_scratch else 3e-6
        # The ReFT branch's options, checked now by the RL stage's own config rather than once the base
        # model and the warm-up are built (its critic warm-up applies with gae only: see the demo).
        RLConfig(task_options=self.task_options, advantage_estimator=self.advantage_estimator,
                 num_samples_per_question=self.num_samples_per_question, questions_per_step=self.questions_per_step,
                 max_new_tokens=self.max_new_tokens, learning_rate=self.rl_learning_rate,
                 temperature=self.rl_temperature, lam=self.lam,
                 value_head_learning_rate=self.value_head_learning_rate)
