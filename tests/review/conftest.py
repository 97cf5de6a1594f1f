"""Fixtures of the review tests: inputs in the formats the other commands write."""
from pathlib import Path

import pytest
from review_inputs import python_rows, samples_row, write_jsonl


@pytest.fixture()
def python_samples(tmp_path) -> Path:
    """test-samples.jsonl with the four python questions and one malformed line among them."""
    return write_jsonl(tmp_path / "test-samples.jsonl", python_rows(), bad_line='{"id": "svamp_9", oops')


@pytest.fixture()
def nl_samples(tmp_path) -> Path:
    rows = [samples_row("gsm8k_1", "Tom has 2 apples and buys 3. How many?", 5.0,
                        ["2 + 3 = 5\nTherefore, the answer is: 5", "2 + 3 = 6\nTherefore, the answer is: 6",
                         "I am not sure."], [5.0, 6.0, None]),
            samples_row("gsm8k_2", "Ann has 10 pens and loses 4. How many are left?", 6.0,
                        ["10 - 4 = 7\nTherefore, the answer is: 7"], [7.0])]
    return write_jsonl(tmp_path / "dev-samples.jsonl", rows)
