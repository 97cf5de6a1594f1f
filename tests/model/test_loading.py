import pytest
import torch

from reftune.config import TinySpec
from reftune.errors import ReftuneError
from reftune.model.heads import PolicyWithValueHead
from reftune.model.loading import build_tiny_tokenizer, is_lora, load_policy, save_pretrained
from reftune.model.response_forward import position_ids_from


def test_tiny_tokenizer_round_trips_text_and_spells_numbers_digit_by_digit(arithmetic_texts):
    tokenizer = build_tiny_tokenizer(arithmetic_texts, vocab_size=300)
    text = "Ava has 1234 apples.\nTherefore, the answer is: 56"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert [tokenizer.decode([i]) for i in tokenizer(" 1234")["input_ids"]] == [" 1", "2", "3", "4"]
    assert len(ids) < len(text) / 2  # words merged: far shorter than characters


def test_pad_and_eos_come_from_the_tokenizer_and_padding_is_left(tiny_policy):
    tokenizer, model = tiny_policy.tokenizer, tiny_policy.model
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    batch = tokenizer(["a", "a longer prompt"], padding=True)
    assert batch["input_ids"][0][0] == tokenizer.pad_token_id and batch["attention_mask"][0][0] == 0


def test_tiny_model_is_sized_by_its_spec_and_seeded(arithmetic_texts):
    small = load_policy("tiny", tokenizer_texts=arithmetic_texts, tiny=TinySpec(hidden_size=32, num_layers=1))
    again = load_policy("tiny", tokenizer_texts=arithmetic_texts, tiny=TinySpec(hidden_size=32, num_layers=1))
    other = load_policy("tiny", tokenizer_texts=arithmetic_texts, tiny=TinySpec(hidden_size=32, num_layers=1), seed=1)
    assert small.model.config.hidden_size == 32 and small.model.config.num_hidden_layers == 1
    first = next(small.model.parameters())
    assert torch.equal(first, next(again.model.parameters()))
    assert not torch.equal(first, next(other.model.parameters()))
    assert first.dtype == torch.float32


def test_saved_folder_reloads_with_transformers(tiny_policy, tmp_path):
    from transformers import AutoModelForCausalLM

    save_pretrained(tiny_policy.model, tiny_policy.tokenizer, tmp_path / "m")
    reloaded = load_policy(str(tmp_path / "m"))
    ids = torch.tensor([[5, 6, 7]])
    assert torch.allclose(reloaded.model(ids).logits, tiny_policy.model(ids).logits, atol=1e-6)
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path / "m"), torch.nn.Module)
    assert reloaded.tokenizer.padding_side == "left"


def test_lora_trains_only_adapters_and_saves_merged_weights(arithmetic_texts, tmp_path):
    policy = load_policy("tiny", tokenizer_texts=arithmetic_texts, lora_rank=4)
    assert is_lora(policy.model)
    trainable = {name for name, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    for name, parameter in policy.model.named_parameters():  # make the adapters do something
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    save_pretrained(policy.model, policy.tokenizer, tmp_path / "merged")
    reloaded = load_policy(str(tmp_path / "merged"))
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(reloaded.model(ids).logits, policy.model(input_ids=ids).logits, atol=1e-5)
    with policy.model.disable_adapter():  # the frozen base is a different model: the reference of RL
        assert not torch.allclose(policy.model(input_ids=ids).logits, reloaded.model(ids).logits, atol=1e-3)


def test_value_head_gives_one_value_per_token_and_shares_the_backbone(tiny_policy):
    model = PolicyWithValueHead(tiny_policy.model)
    ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    logits, values = model(ids, mask)
    assert logits.shape == (2, 3, len(tiny_policy.tokenizer)) and values.shape == (2, 3)
    torch.nn.init.normal_(model.value_head.weight)
    _, values = model(ids, mask)
    values[:, -1].sum().backward()
    backbone = tiny_policy.model.model.layers[0].self_attn.q_proj.weight
    assert backbone.grad is not None and backbone.grad.abs().sum() > 0


def test_left_padding_does_not_change_the_logits(tiny_policy):
    model = tiny_policy.model
    plain = model(torch.tensor([[5, 6, 7]])).logits[0, -1]
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    padded = model(input_ids=torch.tensor([[0, 0, 5, 6, 7]]), attention_mask=mask,
                   position_ids=position_ids_from(mask)).logits[0, -1]
    assert torch.allclose(plain, padded, atol=1e-5)


def test_unknown_model_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReftuneError, match="unknown model 'no-such/model'.*smollm2-135m"):
        load_policy("no-such/model")


def test_model_folder_without_a_tokenizer_is_a_clear_error(tiny_policy, tmp_path):
    tiny_policy.model.save_pretrained(tmp_path / "weights-only")
    with pytest.raises(ReftuneError, match="holds no loadable tokenizer"):
        load_policy(str(tmp_path / "weights-only"))


def test_the_value_of_a_token_comes_from_the_state_before_it(tiny_policy):
    """values[:, t] judges the choice of token t, so it must not have seen token t."""
    model = PolicyWithValueHead(tiny_policy.model)
    torch.nn.init.normal_(model.value_head.weight)
    mask = torch.ones(1, 5, dtype=torch.long)
    _, before = model(torch.tensor([[5, 6, 7, 8, 9]]), mask)
    _, after = model(torch.tensor([[5, 6, 40, 8, 9]]), mask)  # token 2 changed
    assert before[0, 0] == 0 and torch.allclose(before[0, :3], after[0, :3])
    assert not torch.allclose(before[0, 3:], after[0, 3:])


def test_an_unknown_model_fails_in_seconds_when_the_hub_is_unreachable(monkeypatch):
    """Offline, a name that is neither a folder nor cached is one clear line at once, not a minute of retries."""
    import time

    from reftune import hub

    hub.hub_reachable.cache_clear()
    started = time.perf_counter()
    reachable = hub.hub_reachable()
    assert time.perf_counter() - started < 5  # asked once, with a short timeout
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as here and in CI: no hub
    hub.hub_reachable.cache_clear()
    started = time.perf_counter()
    with pytest.raises(ReftuneError, match="unknown model 'no-such-org/no-such-model'.*unreachable"):
        load_policy("no-such-org/no-such-model")
    assert time.perf_counter() - started < 10
    hub.hub_reachable.cache_clear()
    assert isinstance(reachable, bool)
