"""FSDP (version 2) for the training stages: turning it on where accelerate would not, whole weights for
the phases that only decode, and figures that come back sharded. Nothing here does anything for one
process or DDP; docs/distributed.md says what is tested and what each choice costs.

FSDP2 (torch's `fully_shard`, applied by `accelerator.prepare`) keeps each parameter as a DTensor whose
local shard is 1/N of it on each of N processes; a module's forward all-gathers its unit's parameters
and, for a decoder layer, frees them again after its forward. Two consequences for reftune:
  - sampling calls the policy inside the prepared root (the value-head wrapper), so the root's own
    parameters (embeddings, final norm, LM head, value head) are never gathered by its hooks; and one
    decoding pass per token would all-gather every layer once per token. `gathered()` all-gathers
    everything once for the phase instead.
  - the root must be the first FSDP module to run forward (torch names the root that way); in RL the
    first forward is sampling, which enters at the policy, so `gathered()` settles the root first.
Two of those steps have no public torch API and read FSDP2's state (`_lazy_init`, a unit's
`post_forward_mesh_info`), as torch 2.13 names it; tests/stages/test_fsdp.py fails if that moves.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Iterator

from torch import nn

from reftune.errors import ReftuneError

SHARDABLE_STAGES = ("sft", "offline-st", "rl")
"""The stages whose sampling, dev check and export go through gathered() and whole_weights()."""


def fsdp_requested() -> bool:
    """Whether `accelerate launch` was given an FSDP config (it sets this variable for the processes)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def allow_fsdp_on_cpu(accelerator) -> None:
    """Make an accelerator built on CPU (gloo) use the FSDP config it was launched with.

    accelerate 1.15 picks FSDP only for GPU-like backends: in `AcceleratorState.__init__` (state.py) the
    branch that sets `distributed_type = FSDP` and keeps the plugin sits under `distributed_type in
    [MULTI_GPU, MULTI_NPU, ...]`, so a CPU run falls back to DDP over gloo without a word. torch's
    fully_shard itself runs on a CPU mesh over gloo; this sets the two fields that branch would have set,
    from the same FSDP_* variables accelerate launch exported.
    """
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if accelerator.num_processes < 2:
        return  # one process: nothing to shard across
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise ReftuneError("FSDP on CPU needs fsdp_version: 2 in the accelerate config (configs/accelerate/fsdp.yaml)")
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # what the state's end would copy


def is_sharded(accelerator) -> bool:
    """Whether the models this accelerator prepares are sharded with FSDP2."""
    return bool(getattr(accelerator, "is_fsdp2", False))


def refuse_unsupported(accelerator, stage: str) -> None:
    """A clear error for a sharding setup reftune does not handle, before any work is done."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP and not is_sharded(accelerator):
        raise ReftuneError("reftune supports FSDP version 2 only: set fsdp_version: 2 in the accelerate config "
                           "(configs/accelerate/fsdp.yaml)")
    if is_sharded(accelerator) and stage not in SHARDABLE_STAGES:
        raise ReftuneError(f"`reftune {stage}` does not run under FSDP yet (only {', '.join(SHARDABLE_STAGES)} "
                           f"do): launch it with DDP (configs/accelerate/ddp.yaml)")


def refuse_lora(accelerator, model: nn.Module) -> None:
    """LoRA under FSDP is not handled: the export merges adapters into a copy of the live model."""
    from reftune.model.loading import is_lora

    if is_sharded(accelerator) and any(is_lora(module) for module in model.modules()):
        raise ReftuneError("--lora-rank with FSDP is not supported: LoRA trains few weights, so DDP "
                           "(configs/accelerate/ddp.yaml) fits wherever the base model fits on one device")


def quiet_view_warning() -> None:
    """FSDP2 warns when a unit returns a view (the value-head wrapper's sliced logits and squeezed
    values), since an in-place op on one would skip its backward hook; reftune's losses read those
    outputs out of place only (ppo.py), so the warning says nothing a user could act on."""
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(.*\) returned a view tensor",
                            category=UserWarning)


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The modules fully_shard was applied to, the root first (modules() walks from the top)."""
    from torch.distributed.fsdp import FSDPModule

    return [module for module in model.modules() if isinstance(module, FSDPModule)]


def reshards_after_forward(unit) -> bool:
    # torch has a setter (set_reshard_after_forward) but no getter: read what the setter writes.
    return any(group.post_forward_mesh_info is not None for group in unit._get_fsdp_state()._fsdp_param_groups)


@contextmanager
def gathered(model: nn.Module | None) -> Iterator[None]:
    """Every FSDP2 unit of `model` all-gathered once and kept whole until the block ends, then sharded
    again: for phases of forward passes without backward (sampling, the dev check). No-op when `model`
    is not sharded (or None: not prepared yet).

    Cost: each process holds the full parameters for the phase (the optimizer state and gradients stay
    sharded), against one all-gather of every layer per decoding pass, i.e. per generated token, if the
    layers' own hooks gathered them. The gather runs outside inference mode, so the full parameters FSDP
    allocates on the first gather are ordinary tensors that training may use later.
    """
    units = fsdp_units(model) if model is not None else []
    if not units:
        yield
        return
    # torch takes the first FSDP module to run forward as the root; sampling enters at the policy inside
    # the root, so settle it here (the root's forward would do the same).
    units[0]._get_fsdp_state()._lazy_init()
    resharding = [reshards_after_forward(unit) for unit in units]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)  # the hooks must not free what was gathered
        unit.unshard()
    try:
        yield
    finally:
        for unit, reshard in zip(units, resharding):
            unit.set_reshard_after_forward(reshard, recurse=False)
            unit.reshard()


def whole_weights(accelerator, model: nn.Module) -> dict | None:
    """The full state dict of a sharded model, on the main process's CPU (an empty dict on the others);
    every process must call it (it all-gathers). None when the model is not sharded: an export then
    reads the weights off the model itself."""
    if not is_sharded(accelerator):
        return None
    return accelerator.get_state_dict(model)


def as_number(value) -> float:
    """A scalar that FSDP2 may return as a DTensor (the gradient norm over sharded gradients) as a float."""
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return float(value)
