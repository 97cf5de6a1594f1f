"""--gradient-checkpointing: every training stage loads its model with it, and it changes memory, not
results. Unit tests compare one pass with and without it on the same weights: atol 1e-6 in float32 (the
backward pass recomputes the same forward arithmetic, so the figures agree to rounding) and count the
attention calls, which a checkpointed layer makes twice (forward, then again in the backward pass)."""
import logging
import warnings
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file

from reftune.config import OfflineSTConfig, OnlineSTConfig, RLConfig, SFTConfig, VerifierConfig
from reftune.generation.rollout import SamplingParams, sample
from reftune.model.heads import PolicyWithValueHead, Verifier
from reftune.model.loading import is_gradient_checkpointing, load_policy, transformers_model
from reftune.model.response_forward import response_forward
from reftune.stages.rl import build_experience, reference_policy, rl
from reftune.stages.sft import sft
from reftune.tasks import get_task
from reftune.training.batches import collate, encode_pairs, nll_backward, training_pairs
from reftune.training.ppo import ppo_update
from reftune.training.run import changed_options

ATOL = 1e-6
TASK = get_task("arithmetic")
EXAMPLES = TASK.load("train")[:4]


@pytest.fixture(scope="module")
def accelerator():
    from reftune.training.preparation import build_accelerator

    return build_accelerator()


@pytest.fixture()
def transformers_log(accelerator):
    """What transformers logs at warning level during the test (its once-per-process warnings too).
    Depends on `accelerator`, whose creation quiets transformers' logging for the stages."""
    records, handler, logger = [], logging.Handler(), logging.getLogger("transformers")
    handler.emit = records.append
    level = logger.level
    logging.Logger.warning_once.cache_clear()  # a warning given earlier in this process would be hidden
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def about_checkpointing(records) -> list[str]:
    return [r.getMessage() for r in records if "checkpointing" in r.getMessage()]


def tiny(texts, checkpointing: bool, lora_rank: int = 0):
    torch.manual_seed(0)  # peft draws the LoRA weights from torch's generator
    return load_policy("tiny", tokenizer_texts=texts, seed=0, lora_rank=lora_rank,
                       gradient_checkpointing=checkpointing)


@contextmanager
def counting_attention(model):
    """A list that grows by one per call of any layer's attention while the block runs."""
    calls, hooks = [], []
    for layer in transformers_model(model).model.layers:
        hooks.append(layer.self_attn.register_forward_hook(lambda *_: calls.append(1)))
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def gradients(model) -> dict[str, torch.Tensor]:
    """Every trainable parameter's gradient (a missing one fails the comparison)."""
    return {name: p.grad.clone() if p.grad is not None else None
            for name, p in model.named_parameters() if p.requires_grad}


def assert_same_gradients(plain: dict, checkpointed: dict) -> None:
    assert plain.keys() == checkpointed.keys()
    for name, gradient in plain.items():
        assert gradient is not None and checkpointed[name] is not None, name
        assert torch.allclose(gradient, checkpointed[name], atol=ATOL, rtol=0), name
    assert any(bool(g.abs().sum() > 0) for g in plain.values())  # something was compared


@pytest.mark.parametrize("config", [
    SFTConfig(gradient_checkpointing=True), RLConfig(gradient_checkpointing=True),
    OnlineSTConfig(gradient_checkpointing=True), OfflineSTConfig(gradient_checkpointing=True, sampler="tiny"),
    VerifierConfig(gradient_checkpointing=True, sampler="tiny"), RLConfig(gradient_checkpointing=True, lora_rank=4)],
    ids=["sft", "rl", "online-st", "offline-st", "verifier", "rl-lora"])
def test_every_training_stage_loads_its_model_with_checkpointing_when_asked(config, arithmetic_texts):
    from reftune.training.preparation import load_model

    assert is_gradient_checkpointing(load_model(config, "cpu", arithmetic_texts).model)
    config.gradient_checkpointing = False
    assert not is_gradient_checkpointing(load_model(config, "cpu", arithmetic_texts).model)


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_an_sft_batch_gives_the_same_loss_and_gradients(arithmetic_texts, accelerator, transformers_log, lora_rank):
    """With LoRA too: non-reentrant checkpointing needs no embedding output that requires grad."""
    results = {}
    for checkpointing in (False, True):
        policy = tiny(arithmetic_texts, checkpointing, lora_rank)
        encoded, _ = encode_pairs(policy.tokenizer, training_pairs(TASK, EXAMPLES), 10**6)
        per_token = 1.0 / sum(e.num_target_tokens for e in encoded)  # the stage's scale: gradients of order 1
        policy.model.train()
        with counting_attention(policy.model) as calls:
            [loss] = nll_backward(accelerator, policy.model, [(encoded, per_token)], 2, policy.tokenizer.pad_token_id)
        results[checkpointing] = loss, gradients(policy.model), len(calls)
    (plain_loss, plain, plain_calls), (loss, checkpointed, calls) = results[False], results[True]
    assert calls == 2 * plain_calls  # 2 layers x 2 micro-batches, then each layer again in the backward
    assert abs(loss - plain_loss) <= ATOL * abs(plain_loss)
    assert_same_gradients(plain, checkpointed)
    assert about_checkpointing(transformers_log) == []


def experience_of(policy, model: PolicyWithValueHead, config: RLConfig):
    """4 sampled completions with their values, rewards 1 / 0.1 / 0 / 1, and a reference near the policy."""
    rollout = sample(policy.model, policy.tokenizer, [TASK.prompt(e) for e in EXAMPLES],
                     SamplingParams(temperature=1.0, max_new_tokens=16), torch.Generator().manual_seed(0),
                     value_head=model.value_head)
    noise = torch.randn(rollout.old_logps.shape, generator=torch.Generator().manual_seed(1))
    ref_logps = (rollout.old_logps + 0.1 * noise) * rollout.response_mask
    experience, _ = build_experience(config, rollout, torch.tensor([1.0, 0.1, 0.0, 1.0]), ref_logps, True,
                                     lambda total: total, 1)
    return experience


class GradientRecorder:
    """Stands in for the optimizer: keeps the gradients of each step instead of applying them."""

    def __init__(self, model):
        self.model, self.steps = model, []

    def step(self):
        self.steps.append(gradients(self.model))

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_the_ppo_loss_through_the_value_head_gives_the_same_gradients(arithmetic_texts, accelerator,
                                                                      transformers_log, lora_rank):
    """The policy in eval mode, as RL holds a saved model: the update checkpoints it all the same."""
    config = RLConfig(micro_batch_size=2, ppo_epochs=1, kl_in="loss")
    results, experience = {}, None
    for checkpointing in (False, True):
        policy = tiny(arithmetic_texts, checkpointing, lora_rank)
        model = PolicyWithValueHead(policy.model.eval())
        torch.nn.init.normal_(model.value_head.weight, std=0.1, generator=torch.Generator().manual_seed(2))
        if experience is None:  # sampled once, from the model without checkpointing
            experience = experience_of(policy, model, config)
        recorder = GradientRecorder(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        with counting_attention(policy.model) as calls:
            totals = ppo_update(accelerator, model, recorder, trainable, experience, config, use_values=True)
        results[checkpointing] = totals, recorder.steps, len(calls)
        assert not policy.model.training  # the update leaves the mode as it found it
    (plain_totals, [plain], plain_calls), (totals, [checkpointed], calls) = results[False], results[True]
    assert calls == 2 * plain_calls
    for name in ("policy_loss", "value_loss", "kl_loss", "grad_norm"):
        assert abs(totals[name] - plain_totals[name]) <= ATOL, name
    assert_same_gradients(plain, checkpointed)
    assert about_checkpointing(transformers_log) == []


def test_a_checkpointed_pass_over_groups_runs_each_row_whole(arithmetic_texts, transformers_log):
    """Checkpointed layers run without a KV cache, so the prompt a group shares cannot be passed on:
    the pass falls back to whole rows, with the plain pass's numbers."""
    outputs = {}
    for checkpointing in (False, True):
        policy = tiny(arithmetic_texts, checkpointing)
        rollout = sample(policy.model, policy.tokenizer, [TASK.prompt(e) for e in EXAMPLES[:2]],
                         SamplingParams(temperature=1.0, max_new_tokens=12, num_samples=3),
                         torch.Generator().manual_seed(0))
        policy.model.train()
        logits, _ = response_forward(policy.model, rollout.sequences, rollout.attention_mask, rollout.prompt_length,
                                     group_size=3 if checkpointing else 1)
        outputs[checkpointing] = logits.detach(), rollout.sequences
    assert torch.equal(outputs[False][1], outputs[True][1])
    assert torch.allclose(outputs[False][0], outputs[True][0], atol=ATOL, rtol=0)
    assert about_checkpointing(transformers_log) == []


def test_sampling_keeps_its_kv_cache_and_the_models_mode(arithmetic_texts, transformers_log):
    """A decoding step without the cache would see one token: the samples would differ."""
    rollouts = {}
    for checkpointing in (False, True):
        policy = tiny(arithmetic_texts, checkpointing)
        policy.model.train()
        rollouts[checkpointing] = sample(policy.model, policy.tokenizer, [TASK.prompt(e) for e in EXAMPLES],
                                         SamplingParams(temperature=1.0, max_new_tokens=24, num_samples=2),
                                         torch.Generator().manual_seed(0))
        assert policy.model.training
    assert torch.equal(rollouts[False].sequences, rollouts[True].sequences)
    assert rollouts[False].texts == rollouts[True].texts
    assert about_checkpointing(transformers_log) == []


def test_the_verifier_gives_the_same_gradients(arithmetic_texts):
    results = {}
    for checkpointing in (False, True):
        policy = tiny(arithmetic_texts, checkpointing)
        verifier = Verifier(policy.model).train()
        encoded, _ = encode_pairs(policy.tokenizer, training_pairs(TASK, EXAMPLES), 10**6)
        batch = collate(encoded, policy.tokenizer.pad_token_id, "cpu")
        logits = verifier(batch["input_ids"], batch["attention_mask"])
        torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0, 1.0, 0.0])).backward()
        results[checkpointing] = gradients(verifier)
    assert_same_gradients(results[False], results[True])


def test_the_reference_policy_is_not_checkpointed(arithmetic_texts):
    policy = tiny(arithmetic_texts, checkpointing=True)
    assert not is_gradient_checkpointing(reference_policy(policy.model))
    assert is_gradient_checkpointing(policy.model)


def test_a_resumed_run_may_turn_it_on_or_off():
    assert changed_options({"gradient_checkpointing": False}, RLConfig(gradient_checkpointing=True)) == {}


@contextmanager
def enabling_counted(monkeypatch):
    """A list that grows by one each time a stage's model is loaded with checkpointing on."""
    import reftune.model.loading

    calls, enable = [], reftune.model.loading.enable_gradient_checkpointing
    monkeypatch.setattr(reftune.model.loading, "enable_gradient_checkpointing",
                        lambda model: (calls.append(1), enable(model))[1])
    yield calls


def deprecations(caught) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]


def model_weights(folder, step: int) -> dict:
    return load_file(str(folder / "checkpoints" / f"step-{step:06d}" / "model" / "model.safetensors"))


def assert_same_weights(one: dict, other: dict) -> None:
    assert one.keys() == other.keys()
    for name in one:
        assert torch.allclose(one[name], other[name], atol=ATOL, rtol=0), name


def test_sft_with_checkpointing_takes_the_same_two_steps(tmp_path, monkeypatch):
    run = dict(task="arithmetic", model="tiny", max_train_examples=8, eval_limit=2, eval_max_new_tokens=8,
               batch_size=4, micro_batch_size=2, learning_rate=1e-3, max_steps=2, eval_every=2,
               report_to="jsonl", progress=False)
    sft(SFTConfig(**run, output=str(tmp_path / "plain")))
    with enabling_counted(monkeypatch) as enabled, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sft(SFTConfig(**run, gradient_checkpointing=True, output=str(tmp_path / "checkpointed"))).steps == 2
    assert enabled == [1] and deprecations(caught) == []
    assert_same_weights(model_weights(tmp_path / "plain", 2), model_weights(tmp_path / "checkpointed", 2))


@pytest.mark.slow
@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_rl_with_checkpointing_takes_the_same_two_steps(tmp_path, monkeypatch, warm_tiny, lora_rank):
    """One sample per question, so neither run shares prompts: the same passes, step for step."""
    run = dict(task="arithmetic", model=warm_tiny, max_train_examples=8, eval_limit=2, eval_max_new_tokens=8,
               questions_per_step=4, micro_batch_size=2, max_new_tokens=64, learning_rate=1e-4, max_steps=2,
               eval_every=1, lora_rank=lora_rank, report_to="jsonl", progress=False)
    rl(RLConfig(**run, output=str(tmp_path / "plain")))
    with enabling_counted(monkeypatch) as enabled, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rl(RLConfig(**run, gradient_checkpointing=True, output=str(tmp_path / "checkpointed")))
    assert enabled == [1] and deprecations(caught) == []
    plain, checkpointed = (model_weights(tmp_path / name, 2) for name in ("plain", "checkpointed"))
    assert any(not torch.equal(plain[name], model_weights(tmp_path / "plain", 1)[name]) for name in plain)
    assert_same_weights(plain, checkpointed)
