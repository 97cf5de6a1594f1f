"""reftune's own calls into its dependencies raise no FutureWarning or DeprecationWarning: an API that
warns today is removed tomorrow, and a console full of warnings hides the ones that matter."""
import warnings

import pytest

from reftune.config import EvalConfig, RLConfig, SFTConfig
from reftune.stages.evaluate import evaluate
from reftune.stages.rl import rl
from reftune.stages.sft import sft

QUIET = dict(task="arithmetic", max_train_examples=8, eval_limit=2, eval_max_new_tokens=16, report_to="jsonl,tensorboard",
             progress=False)


@pytest.mark.slow
def test_the_stages_raise_no_deprecation_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sft(SFTConfig(**QUIET, model="tiny", batch_size=8, micro_batch_size=4, max_steps=2, eval_every=2,
                      output=str(tmp_path / "sft")))
        warm = str(tmp_path / "sft" / "best")
        for estimator, samples, lora, checkpointing in (("gae", 1, 0, False), ("group", 2, 4, True)):
            rl(RLConfig(**QUIET, model=warm, questions_per_step=4, num_samples_per_question=samples,
                        micro_batch_size=8, max_new_tokens=16, max_steps=1, eval_every=1, lora_rank=lora,
                        gradient_checkpointing=checkpointing, advantage_estimator=estimator,
                        output=str(tmp_path / f"rl-{estimator}")))
        evaluate(EvalConfig(task="arithmetic", model=warm, limit=2, num_samples=2, temperature=1.0, max_new_tokens=16,
                            progress=False, output=str(tmp_path / "eval")))
    deprecations = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
                    if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert deprecations == []
