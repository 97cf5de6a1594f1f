"""The oneDNN route for CPU linear layers: same numbers as nn.Linear (to fp32 rounding), forward and
backward, only for the calls it can take, and invisible to saving and loading."""
import pytest
import torch
import torch.nn.functional as F

from reftune.model import cpu_linear
from reftune.model.cpu_linear import FastCPULinear, OneDNNLinear, onednn_available, set_fast_cpu_linear

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


def close(a, b):
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture()
def every_call_routed(monkeypatch):
    """Route products of any size, so that small test layers take the oneDNN path."""
    monkeypatch.setattr(cpu_linear, "MIN_MULTIPLY_ADDS", 0)


@pytest.mark.parametrize("with_bias", [False, True])
def test_forward_and_gradients_match_nn_linear(with_bias, every_call_routed):
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 80, bias=with_bias)
    x = torch.randn(3, 7, 48, requires_grad=True)
    upstream = torch.randn(3, 7, 80)

    def run(fast: bool):
        set_fast_cpu_linear(layer, fast)
        layer.zero_grad()
        x.grad = None
        out = layer(x)
        (out * upstream).sum().backward()
        grads = [x.grad.clone(), layer.weight.grad.clone()] + ([layer.bias.grad.clone()] if with_bias else [])
        return out.detach(), grads

    plain_out, plain_grads = run(False)
    routed_out, routed_grads = run(True)
    assert type(layer) is FastCPULinear
    assert close(routed_out, plain_out)
    assert all(close(a, b) for a, b in zip(routed_grads, plain_grads))


def test_only_large_fp32_cpu_products_are_routed(monkeypatch):
    calls = []
    real = cpu_linear.onednn_linear
    monkeypatch.setattr(cpu_linear, "onednn_linear", lambda *a: calls.append(1) or real(*a))
    layer = torch.nn.Linear(64, 128)
    set_fast_cpu_linear(layer)
    big = torch.randn(512, 64)  # 512 * 64 * 128 = 4.2M multiply-adds
    with torch.no_grad():
        layer(big)                   # inference: the op itself
    layer(big)                       # training: through the autograd rule (its forward)
    layer(big[:4])                   # 33k multiply-adds: nn.Linear's own
    layer.double()(big.double())     # not fp32: nn.Linear's own
    assert len(calls) == 2


def test_autograd_rule_matches_f_linear_gradients():
    torch.manual_seed(0)
    args = (torch.randn(2, 3, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True),
            torch.randn(4, requires_grad=True))
    grads = torch.autograd.grad(OneDNNLinear.apply(*args).square().sum(), args)
    expected = torch.autograd.grad(F.linear(*args).square().sum(), args)
    assert all(close(a, b) for a, b in zip(grads, expected))


def test_environment_variable_chooses(monkeypatch):
    monkeypatch.setenv(cpu_linear.ENV_VARIABLE, "torch")
    assert cpu_linear.wanted() is False
    monkeypatch.setenv(cpu_linear.ENV_VARIABLE, "onednn")
    assert cpu_linear.wanted() is True
    monkeypatch.setenv(cpu_linear.ENV_VARIABLE, "fastest")
    with pytest.raises(cpu_linear.ReftuneError, match="auto, onednn or torch"):
        cpu_linear.wanted()


def test_a_model_decodes_and_saves_the_same_either_way(tiny_policy, tmp_path, every_call_routed):
    from transformers import AutoModelForCausalLM

    from reftune.generation.rollout import SamplingParams, sample

    model, tokenizer = tiny_policy.model, tiny_policy.tokenizer
    prompts = ["1 + 2 =", "7 * 3 =", "10 - 4 ="]
    params = SamplingParams(temperature=0, max_new_tokens=12)
    set_fast_cpu_linear(model, fast=False)
    plain = sample(model, tokenizer, prompts, params)
    assert set_fast_cpu_linear(model) > 0
    routed = sample(model, tokenizer, prompts, params)
    assert routed.texts == plain.texts
    assert torch.allclose(routed.old_logps, plain.old_logps, atol=1e-4)

    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(reloaded.lm_head) is torch.nn.Linear
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_the_probe_is_asked_once_per_machine_and_its_answer_kept(tmp_path, monkeypatch):
    """Timings taken on a busy machine must not switch kernels between runs: the answer is cached."""
    import json

    monkeypatch.setenv("REFTUNE_CACHE", str(tmp_path))
    monkeypatch.delenv(cpu_linear.ENV_VARIABLE, raising=False)
    cpu_linear.machine_prefers_onednn.cache_clear()
    first = cpu_linear.wanted()
    saved = json.loads((tmp_path / "cpu_linear.json").read_text())
    [(key, answer)] = saved.items()
    assert answer == first and cpu_linear.cpu_name() in key
    # a later process reads the kept answer instead of timing again
    (tmp_path / "cpu_linear.json").write_text(json.dumps({key: not first}))
    cpu_linear.machine_prefers_onednn.cache_clear()
    assert cpu_linear.wanted() == (not first)
    cpu_linear.machine_prefers_onednn.cache_clear()


def test_a_busy_moment_during_the_probe_does_not_decide(monkeypatch):
    """Each shape's first spell sees oneDNN slowed by load elsewhere; the later spells decide."""
    if not cpu_linear.onednn_available():
        pytest.skip("this torch build has no oneDNN linear op")
    calls = []

    def spell(first, second, rounds):
        calls.append(rounds)
        return (5.0, 1.0) if len(calls) in (1, 6) else (0.5, 1.0)  # oneDNN's time, MKL's time

    monkeypatch.setattr(cpu_linear, "alternating_best_times", spell)
    probe = cpu_linear.onednn_is_faster.__wrapped__
    assert probe(trials=5, pause=0) is True and len(calls) == 10
    calls.clear()
    assert probe(trials=1, pause=0) is False  # one spell alone would have been fooled


def test_the_chosen_path_says_what_decided(monkeypatch):
    monkeypatch.setenv(cpu_linear.ENV_VARIABLE, "torch")
    assert cpu_linear.chosen_path() == "torch (REFTUNE_CPU_LINEAR=torch)"
    monkeypatch.setenv(cpu_linear.ENV_VARIABLE, "auto")
    monkeypatch.setattr(cpu_linear, "machine_prefers_onednn", lambda: True)
    assert cpu_linear.chosen_path() == "onednn (this machine's probe)"
