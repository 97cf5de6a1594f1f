"""What a stage builds before its loop: the accelerator (one process, or as many as `accelerate launch`
starts), the seed, the model the config names and its optimizer."""
from __future__ import annotations

import random

import torch

from reftune.model.loading import load_policy
from reftune.training.sharding import allow_fsdp_on_cpu, fsdp_requested

def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where the parameters' device has one (CPU, CUDA): one pass per
    parameter instead of a dozen ops; the arithmetic is AdamW's either way."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # a device without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def quiet_libraries() -> None:
    """reftune draws its own progress bars; the libraries' per-save bars and notices are noise.
    Warnings stay on: reftune's own calls must raise none (tests/test_warnings.py)."""
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def build_accelerator():
    """One process by default; under `accelerate launch` as many as it starts (DDP, FSDP, ZeRO). On CPU
    an FSDP config is honoured too (accelerate alone would run DDP: sharding.allow_fsdp_on_cpu)."""
    from accelerate import Accelerator

    quiet_libraries()
    cpu = not torch.cuda.is_available()
    accelerator = Accelerator(cpu=cpu)
    if cpu and fsdp_requested():
        allow_fsdp_on_cpu(accelerator)
    return accelerator


def load_model(config, device, tokenizer_texts: list[str] | None = None, name: str | None = None):
    """The policy named by config.model (or `name`, such as a checkpoint's model folder), with
    gradient checkpointing when a training stage's config asks for it."""
    return load_policy(name or config.model, device=device, lora_rank=config.lora_rank,
                       lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, tiny=config.tiny_spec(),
                       tokenizer_texts=tokenizer_texts, seed=config.seed,
                       gradient_checkpointing=getattr(config, "gradient_checkpointing", False))
