"""The demo's base model: a `tiny` model pretrained by reftune on generated arithmetic text, built
once and cached, so that warm-up SFT and RL start from a model that already has the skills (as the
paper's pretrained LMs do) instead of from random weights.

The corpus mixes (a) worked solutions of generated word problems, each written along a reasoning
path drawn at random (story order, gains and losses apart, one expression) and (b) plain arithmetic
statements in the same notation. Its problems come only from the train bucket of the arithmetic
generator, with a seed of their own: no dev or test question can appear in it.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reftune.config import TinySpec, parse_task_options
from reftune.model.cache import cache_dir
from reftune.model.cpu_linear import prefer_fast_cpu_linear
from reftune.model.loading import build_tiny_model, build_tiny_tokenizer, save_pretrained
from reftune.tasks import get_task
from reftune.tasks.arithmetic import STRATEGIES, cot, generate_problems
from reftune.training.batches import linear_warmup_decay
from reftune.training.preparation import quiet_libraries
from reftune.training.tracking import progress_bar


@dataclass(frozen=True)
class BaseSpec:
    """What identifies a cached base model: change any field and a new one is built."""

    model: TinySpec = TinySpec(hidden_size=128, num_layers=4, num_heads=4, vocab_size=400)
    """The tiny model's size."""
    corpus_problems: int = 6000
    """Worked problems in the corpus (train bucket only)."""
    corpus_statements: int = 20000
    """Arithmetic statements ("12 + 3 * 5 = 27") in the corpus."""
    steps: int = 1200
    block_size: int = 192
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0
    task_options: str = ""
    """The arithmetic generator's knobs, as the demo's task uses them."""

    def folder(self) -> Path:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
        return cache_dir() / "models" / f"arithmetic-base-{digest}"


def arithmetic_statement(rng: random.Random, max_number: int) -> str:
    """One line in the CoTs' notation: mostly a single operation ("17 - 4 = 13", "6 * 18 = 108"),
    sometimes a chain ("17 - 4 + 3 * 6 = 31")."""
    if rng.random() < 0.7:
        kind = rng.choice("+-*")
        if kind == "*":
            a, b = rng.randint(2, 9), rng.randint(2, max_number)
            return f"{a} * {b} = {a * b}"
        a, b = rng.randint(2, 12 * max_number), rng.randint(2, 4 * max_number)
        if kind == "-":
            a, b = max(a, b), min(a, b)
            return f"{a} - {b} = {a - b}"
        return f"{a} + {b} = {a + b}"
    terms = [str(rng.randint(2, 2 * max_number))]
    value = int(terms[0])
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.4:
            count, size = rng.randint(2, 9), rng.randint(2, max_number)
            term, amount = f"{count} * {size}", count * size
        else:
            amount = rng.randint(2, max_number)
            term = str(amount)
        sign = "-" if value > amount and rng.random() < 0.45 else "+"
        value += amount if sign == "+" else -amount
        terms.append(f"{sign} {term}")
    return f"{' '.join(terms)} = {value}"


def corpus(spec: BaseSpec) -> list[str]:
    options = {**parse_task_options(spec.task_options), "seed": spec.seed + 7919}
    task = get_task("arithmetic", **options)
    rng = random.Random(spec.seed)
    config = task.config.__class__(**{**asdict(task.config), "sizes": {"train": spec.corpus_problems}})
    texts = []
    for problem, _ in generate_problems(config, "train"):
        path = cot(problem, "nl", rng.choice(STRATEGIES))
        texts.append(f"Question:\n{problem.question}\nAnswer reasoning:\n{path}\n"
                     f"Therefore, the answer is: {problem.answer}")
    texts += [arithmetic_statement(rng, task.config.max_number) for _ in range(spec.corpus_statements)]
    rng.shuffle(texts)
    return texts


def pack(texts: list[str], tokenizer, block_size: int) -> torch.Tensor:
    """All texts joined by EOS and cut into blocks: (num_blocks, block_size)."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    usable = len(ids) // block_size * block_size
    return torch.tensor(ids[:usable]).view(-1, block_size)


PACKAGED_BASE = Path(__file__).resolve().parent / "packaged_base"
"""The default demo's base model, shipped with reftune (4 MB): what pretrain_base builds for the demo's
default spec, so that the first demo need not spend about 10 minutes building it. Its
reftune_base.json holds the spec it was built for and where."""


def packaged_base(spec: BaseSpec) -> Path | None:
    """The packaged base when it was built for exactly this spec, else None."""
    record = PACKAGED_BASE / "reftune_base.json"
    if not record.exists():
        return None
    built_for = json.loads(record.read_text())
    return PACKAGED_BASE if {field: built_for.get(field) for field in asdict(spec)} == asdict(spec) else None


def is_packaged_copy(folder: Path) -> bool:
    record = folder / "reftune_base.json"
    return record.exists() and "packaged" in json.loads(record.read_text())


def pretrain_base(spec: BaseSpec = BaseSpec(), show_progress: bool = True, build: bool = False) -> Path:
    """The cached base model folder. When missing, the packaged base is copied there if it was built
    for this spec, else it is built (about 10 minutes on 2 CPU cores for the demo's). build=True
    builds it here even so, replacing a packaged copy in the cache; a base built here is kept."""
    folder = spec.folder()
    if (folder / "config.json").exists() and not (build and is_packaged_copy(folder)):
        return folder
    packaged = None if build else packaged_base(spec)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".base-", dir=folder.parent))
    if packaged is not None:
        shutil.copytree(packaged, scratch, dirs_exist_ok=True)
    else:
        build_base(spec, show_progress, scratch)
    install(scratch, folder)
    return folder


def build_base(spec: BaseSpec, show_progress: bool, output: Path) -> None:
    """Pretrain the base model on the spec's corpus and save it, with its record, into `output`."""
    started = time.perf_counter()
    quiet_libraries()  # the base is built before any stage has quietened transformers' save bar
    texts = corpus(spec)
    tokenizer = build_tiny_tokenizer(texts, spec.model.vocab_size)
    model = build_tiny_model(tokenizer, spec.model, spec.seed)
    prefer_fast_cpu_linear(model)
    blocks = pack(texts, tokenizer, spec.block_size)
    generator = torch.Generator().manual_seed(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    warmup = max(1, spec.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_warmup_decay(s, spec.steps, warmup))
    bar = progress_bar(spec.steps, "pretraining the base model (once)", show_progress)
    model.train()
    for _ in range(spec.steps):
        batch = blocks[torch.randint(len(blocks), (spec.batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    save_pretrained(model, tokenizer, output)
    (output / "reftune_base.json").write_text(json.dumps(
        {**asdict(spec), "final_loss": loss.item(), "seconds": round(time.perf_counter() - started, 1),
         "corpus_texts": len(texts), "blocks": len(blocks)}, indent=1))


def install(scratch: Path, folder: Path) -> None:
    """Move a finished base from `scratch` to `folder` in one rename (a reader never sees half of it),
    setting aside a packaged copy it replaces; when another process put a base there first, theirs is kept."""
    if (folder / "config.json").exists() and is_packaged_copy(folder):
        aside = folder.with_name(f".replaced-{folder.name}-{os.getpid()}")
        os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(scratch, folder)
    except OSError:  # another process built or copied it first
        shutil.rmtree(scratch, ignore_errors=True)
