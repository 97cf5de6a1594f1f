"""annotate --source model with a local model: reftune's own sampler, journaled and cached like an endpoint."""
import json

import pytest

from reftune.cli import main
from annotate_fixtures import arithmetic_data, empty_prompt_file  # noqa: F401 (fixtures)


@pytest.mark.slow
def test_a_local_model_is_sampled_in_batches_and_a_second_run_samples_nothing(tmp_path, arithmetic_data,
                                                                             empty_prompt_file):
    data, _ = arithmetic_data
    output = tmp_path / "out"
    args = ["annotate", "--task", "arithmetic", "--data", str(data), "--output", str(output), "--source", "model",
            "--model", "tiny", "--prompt-file", str(empty_prompt_file), "--num-samples", "3", "--limit", "5",
            "--batch-size", "2", "--max-new-tokens", "24", "--no-progress"]
    assert main(args) == 0
    journal = output / "journal.jsonl"
    responses = [json.loads(line) for line in journal.read_text().splitlines() if '"event": "response"' in line]
    assert len(responses) == 15 and all(r["tokens_in"] > 0 for r in responses)
    summary = json.loads((output / "annotate.json").read_text())
    assert summary["requests"] == 15 and sum(summary["verdicts"].values()) == 15
    size = journal.stat().st_size
    assert main(args) == 0
    added = journal.read_text()[size:]
    assert '"event": "response"' not in added and '"event": "verified"' not in added
