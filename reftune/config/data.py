"""The configs of the data side: `annotate` (make verified CoTs) and `serve` (an OpenAI-compatible
server over a model reftune loads)."""
from __future__ import annotations

from dataclasses import dataclass

from reftune.config.fields import check_fields
from reftune.errors import ReftuneError

SOURCES = ("notes", "model")


@dataclass(kw_only=True)
class AnnotateConfig:
    """Make chain-of-thought training data: convert the data's own notes, or sample a model, and keep
    the CoTs that verify (final answer against the gold, programs run in the sandbox, stated steps)."""

    task: str = ""
    """gsm8k, svamp, mathqa (multiple choice), mathqa-numeric or arithmetic: answer reading and checking."""
    style: str = "nl"
    """nl (N-CoT) or python (P-CoT programs, run in the sandbox)."""
    data: str = ""
    """The questions: a .json / .jsonl file (GSM8K, SVAMP, ReFT or MathQA records); never rewritten."""
    split: str = "train"
    """Split read when --data is a folder."""
    output: str = ""
    """Folder for journal.jsonl, annotated.json, rejects.jsonl and annotate.json; the same command
    again resumes from its journal."""
    source: str = "notes"
    """notes: convert the data's own arithmetic (GSM8K calculator notes -> programs, SVAMP equations);
    model: sample --num-samples CoTs per question from --endpoint or --model."""
    limit: int | None = None
    """Annotate the first N questions only."""
    endpoint: str | None = None
    """model source: base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1."""
    api_model: str | None = None
    """model source: the model name the endpoint serves (its /v1/models lists them)."""
    api_key_env: str | None = None
    """model source: the environment variable holding the API key (the key is never written down)."""
    model: str | None = None
    """model source without an endpoint: a local model (hub id, folder, smollm2-135m, a run's best/)."""
    chat: bool = False
    """Send chat messages (/chat/completions; a local model's chat template) instead of a plain prompt."""
    prompt_file: str | None = None
    """Few-shot examples put before each question ("Question:/Answer reasoning:" blocks); default:
    the built-in file for the task and style. An empty file means zero-shot."""
    num_samples: int = 4
    """model source: CoTs sampled per question (N)."""
    keep_per_question: int = 4
    """Most distinct verified CoTs kept per question (K): the several paths ReFT relies on."""
    temperature: float = 0.7
    """Sampling temperature; 0 is greedy (then one sample per question is enough)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 keeps all."""
    max_new_tokens: int = 400
    """Longest CoT requested, in tokens."""
    concurrency: int = 8
    """Requests to the endpoint in flight at once."""
    retries: int = 4
    """Tries after the first for a request that fails with 429, 5xx, a timeout or a lost connection."""
    request_timeout: float = 60.0
    """Seconds a request may take before it counts as failed (and is retried)."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled for each further one."""
    price_per_1k: float | None = None
    """Price per 1,000 tokens (in and out), to report the cost."""
    batch_size: int = 8
    """Local model: questions per sampling call."""
    seed: int = 0
    """Seeds the local model's sampling."""
    progress: bool = True
    """Show a progress bar with the coverage so far."""

    def __post_init__(self):
        check_fields(self)
        for name in ("task", "data", "output"):
            if not getattr(self, name):
                raise ReftuneError(f"annotate needs --{name}")
        if self.source not in SOURCES:
            raise ReftuneError(f"unknown --source {self.source!r}: use one of {SOURCES}")
        if self.source == "model" and not (self.endpoint or self.model):
            raise ReftuneError("--source model needs --endpoint URL --api-model NAME, or --model for a local model")
        if self.endpoint and not self.api_model:
            raise ReftuneError("--endpoint needs --api-model: the name of the model it serves")
        if self.endpoint and self.model:
            raise ReftuneError("give --endpoint or --model, not both")
        for name in ("num_samples", "keep_per_question", "concurrency", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ReftuneError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ReftuneError(f"--limit must be at least 1 (leave it out for all questions), got {self.limit}")
        if self.retries < 0 or self.request_timeout <= 0 or self.backoff < 0:
            raise ReftuneError("--retries and --backoff must be >= 0 and --request-timeout > 0")


@dataclass(kw_only=True)
class ServeConfig:
    """An OpenAI-compatible HTTP server (/v1/models, /v1/completions, /v1/chat/completions) over any
    model reftune loads; concurrent requests are batched into one sampling call."""

    model: str = ""
    """A HF hub id, a local model folder (a run's best/), smollm2-135m or tiny (random weights)."""
    host: str = "127.0.0.1"
    """Address to listen on; anything but loopback exposes the model to the network."""
    port: int = 8000
    """Port to listen on; 0 picks a free one (the URL is printed)."""
    served_name: str | None = None
    """The model name clients ask for (shown by /v1/models); default: a model folder's own name (not its
    path), else --model as given (a hub id, smollm2-135m, tiny)."""
    max_batch: int = 16
    """Most completions computed by one sampling call: requests waiting together share calls, and a
    larger request is answered in pieces of this size (it bounds the memory a request takes)."""
    max_request_rows: int = 64
    """Most completions one request may ask for (its prompts x n); a larger request is refused (400)."""
    max_body_bytes: int = 1_000_000
    """Largest request body in bytes; a larger one is refused (400) without being read."""
    max_tokens_limit: int = 1024
    """Largest max_tokens a request may ask for."""
    tiny_task: str = "arithmetic"
    """tiny only: the task whose texts the in-memory tokenizer is fitted to."""
    seed: int = 0
    """Seeds sampling (and, for tiny, the random weights)."""

    def __post_init__(self):
        check_fields(self)
        if not self.model:
            raise ReftuneError("serve needs a model: reftune serve MODEL (a folder, hub id, smollm2-135m or tiny)")
        if not 0 <= self.port <= 65535:
            raise ReftuneError(f"--port must be in 0..65535 (0 picks a free port), got {self.port}")
        for name in ("max_batch", "max_request_rows", "max_body_bytes", "max_tokens_limit"):
            if getattr(self, name) < 1:
                raise ReftuneError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
