"""Linear layers on CPU through oneDNN's fp32 matrix multiply instead of MKL's, where that is faster.

torch sends an fp32 `F.linear` on CPU to MKL. On the AMD EPYC (Zen 5, AVX-512) this project is
developed and tested on, MKL runs a slower path than oneDNN's AVX-512 kernels, which torch also
ships (`torch.ops.mkldnn._linear_pointwise`): faster for products of a few million multiply-adds or
more (decoding smollm2, any training step), slower for small ones (its fixed cost per call; figures in
docs/performance.md). Both compute in fp32: results agree to fp32 rounding, not bit for bit.

`set_fast_cpu_linear(model)` turns the model's `nn.Linear` layers into `FastCPULinear`, the same
layer (same weights, state dict, isinstance) whose forward sends each large enough fp32 CPU call to
oneDNN, with an autograd rule whose two backward products go there too. `load_policy` does this
when a short probe finds oneDNN at least 10% faster on this machine (on CPUs where MKL has its best
path it may not be). The probe's answer is kept in reftune's cache per CPU and torch version: a timing
taken on a busy machine must not switch kernels between two runs, or two processes of one run, since
the kernels agree only to fp32 rounding and a seeded run must repeat exactly. REFTUNE_CPU_LINEAR=torch
turns it off, =onednn on.
"""
from __future__ import annotations

import functools
import json
import os
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reftune.errors import ReftuneError
from reftune.model.cache import cache_dir

ENV_VARIABLE = "REFTUNE_CPU_LINEAR"


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., in) @ weight (out, in)^T + bias (out,), by oneDNN; weight may be a strided view."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """F.linear with forward and backward products in oneDNN. Shapes as `onednn_linear`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # (..., out) @ (out, in): the weight's transpose, as a view
            grad_x = onednn_linear(grad, weight.t())
        flat_grad = grad.reshape(-1, grad.size(-1))
        if ctx.needs_input_grad[1]:  # (out, rows) @ (rows, in), both as views
            grad_weight = onednn_linear(flat_grad.t(), x.reshape(-1, x.size(-1)).t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = flat_grad.sum(0)
        return grad_x, grad_weight, grad_bias


MIN_MULTIPLY_ADDS = 2 ** 21
"""Below about this many multiply-adds (rows x in x out) oneDNN's cost per call outweighs its
faster kernel on the development machine (measured from 64x64 to 576x1536 weights, 1 to 2048 rows)."""


def routable(x: Tensor, weight: Tensor) -> bool:
    """Whether oneDNN takes this call: a large enough product of fp32 CPU tensors. The cheapest test
    goes first: it runs on every call of every layer."""
    return (x.numel() * weight.size(0) >= MIN_MULTIPLY_ADDS and x.dtype == weight.dtype == torch.float32
            and x.device.type == "cpu" and x.dim() >= 2)


class FastCPULinear(nn.Linear):
    """nn.Linear whose large fp32 CPU products go to oneDNN (module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if not routable(x, self.weight):
            return F.linear(x, self.weight, self.bias)
        parts = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        if torch.is_grad_enabled() and any(t.requires_grad for t in parts):
            return OneDNNLinear.apply(x, self.weight, self.bias)
        return onednn_linear(x, self.weight, self.bias)


def set_fast_cpu_linear(model: nn.Module, fast: bool = True) -> int:
    """Turn the plain nn.Linear layers of `model` into FastCPULinear (`fast`), or back; returns how
    many layers changed. Weights, state dict and saved folders are untouched."""
    old, new = (nn.Linear, FastCPULinear) if fast else (FastCPULinear, nn.Linear)
    changed = 0
    for module in model.modules():
        if type(module) is old:
            module.__class__ = new
            changed += 1
    return changed


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@functools.cache
def onednn_is_faster(margin: float = 0.9, rounds: int = 15, trials: int = 5, pause: float = 0.2) -> bool:
    """Time MKL and oneDNN on a decoding shape and a training shape (a second or two); True when
    oneDNN's best time is under `margin` of MKL's on both and it gives the same numbers. The two are
    timed in alternation, so a burst of load elsewhere slows both alike, and each keeps its best over
    `trials` spells of `rounds`, `pause` seconds apart: a machine busy for a moment (a pip install
    beside it, say) cannot decide for the whole spell."""
    if not onednn_available():
        return False
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(1024, 512, generator=generator)
    try:
        for rows in (16, 1024):
            x = torch.randn(rows, 512, generator=generator)
            if not torch.allclose(onednn_linear(x, weight), F.linear(x, weight), rtol=1e-4, atol=1e-4):
                return False
            best = [float("inf"), float("inf")]
            for trial in range(trials):
                if trial:
                    time.sleep(pause)
                times = alternating_best_times(lambda: onednn_linear(x, weight), lambda: F.linear(x, weight), rounds)
                best = [min(old, new) for old, new in zip(best, times)]
            if best[0] > margin * best[1]:
                return False
    except RuntimeError:  # a torch build whose oneDNN op refuses these inputs
        return False
    return True


def alternating_best_times(first, second, rounds: int) -> tuple[float, float]:
    """The best time of each of two functions, timed in turn `rounds` times after a warm-up call each."""
    first(), second()
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for index, function in enumerate((first, second)):
            started = time.perf_counter()
            function()
            best[index] = min(best[index], time.perf_counter() - started)
    return best[0], best[1]


def wanted() -> bool:
    """The environment variable's choice, else this machine's probe answer."""
    choice = os.environ.get(ENV_VARIABLE, "auto").strip().lower()
    if choice not in ("auto", "onednn", "torch"):
        raise ReftuneError(f"{ENV_VARIABLE}={choice!r}: use auto, onednn or torch")
    if choice == "torch":
        return False
    return onednn_available() if choice == "onednn" else machine_prefers_onednn()


@functools.cache
def machine_prefers_onednn() -> bool:
    """The probe's answer for this CPU and torch version, probed once and then read from the cache
    (written under a scratch name and renamed, so concurrent processes agree on one answer)."""
    path = cache_dir() / "cpu_linear.json"
    key = f"{cpu_name()}|{os.cpu_count()}|torch {torch.__version__}"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = onednn_is_faster()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            scratch.write_text(json.dumps(known, indent=1))
            os.replace(scratch, path)
        except OSError:  # a read-only cache: decide per process, as before
            pass
    return bool(known[key])


def chosen_path() -> str:
    """Which kernels this process's CPU linear layers use, and why, in a few words: for the demo's
    first lines and each run's record."""
    choice = os.environ.get(ENV_VARIABLE, "auto").strip().lower()
    path = "onednn" if wanted() else "torch"
    return f"{path} ({ENV_VARIABLE}={choice})" if choice != "auto" else f"{path} (this machine's probe)"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def prefer_fast_cpu_linear(model: nn.Module) -> int:
    """`set_fast_cpu_linear(model)` when wanted here (`wanted`) and the model is fp32 on CPU."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32 or not wanted():
        return 0
    return set_fast_cpu_linear(model)
