"""annotate --source model against a real HTTP endpoint on loopback (the fake one in conftest)."""
import json
from collections import Counter

import pytest

from reftune.cli import main
from reftune.tasks import get_task
from annotate_fixtures import arithmetic_data, empty_prompt_file, fake_endpoint  # noqa: F401 (fixtures)


def annotate_args(data, output, endpoint, prompt_file, *extra):
    return ["annotate", "--task", "arithmetic", "--data", str(data), "--output", str(output), "--source", "model",
            "--endpoint", endpoint.url, "--api-model", "fake", "--prompt-file", str(prompt_file), "--no-progress",
            *extra]


def journal_events(output):
    return [json.loads(line) for line in (output / "journal.jsonl").read_text().splitlines()]


def test_retries_and_timeouts_lose_and_duplicate_no_question(tmp_path, arithmetic_data, fake_endpoint,
                                                             empty_prompt_file):
    data, answers = arithmetic_data
    fake_endpoint.behaviour.fail_every = 3
    fake_endpoint.behaviour.hang_every = 5
    args = annotate_args(data, tmp_path / "out", fake_endpoint, empty_prompt_file, "--num-samples", "1",
                         "--concurrency", "4", "--retries", "6", "--backoff", "0.01", "--request-timeout", "0.5")
    assert main(args) == 0
    outcomes = Counter(outcome for _, outcome in fake_endpoint.requests)
    assert outcomes["500"] and outcomes["429"] and outcomes["hang"]  # every kind of fault happened
    records = json.loads((tmp_path / "out" / "annotated.json").read_text())
    assert sorted(r["item_id"] for r in records) == sorted(f"arith_{i}" for i in range(len(answers)))
    summary = json.loads((tmp_path / "out" / "annotate.json").read_text())
    assert summary["coverage"] == 1.0 and summary["requests_failed"] == 0 and summary["requests"] == len(answers)
    assert (tmp_path / "out" / "rejects.jsonl").read_text() == ""
    loaded = get_task("arithmetic").load("train", tmp_path / "out" / "annotated.json")
    assert len(loaded) == len(answers) and all(example.cot for example in loaded)


def test_the_same_command_again_is_free_and_changes_nothing(tmp_path, arithmetic_data, fake_endpoint,
                                                            empty_prompt_file):
    data, _ = arithmetic_data
    args = annotate_args(data, tmp_path / "out", fake_endpoint, empty_prompt_file, "--num-samples", "2", "--limit", "4")
    assert main(args) == 0
    first = (tmp_path / "out" / "annotated.json").read_text()
    sent = len(fake_endpoint.requests)
    assert main(args) == 0
    assert len(fake_endpoint.requests) == sent  # finished questions are skipped
    assert (tmp_path / "out" / "annotated.json").read_text() == first
    assert [e["event"] for e in journal_events(tmp_path / "out")].count("start") == 2


def test_identical_correct_cots_are_kept_once(tmp_path, arithmetic_data, fake_endpoint, empty_prompt_file):
    data, _ = arithmetic_data
    args = annotate_args(data, tmp_path / "out", fake_endpoint, empty_prompt_file, "--num-samples", "3", "--limit", "2")
    assert main(args) == 0
    records = json.loads((tmp_path / "out" / "annotated.json").read_text())
    assert [r["item_id"] for r in records] == ["arith_0", "arith_1"]  # the fake answers the same text thrice
    assert records[0]["answer_cot"] == "We work it out."  # the answer line is the SFT target's to add
    summary = json.loads((tmp_path / "out" / "annotate.json").read_text())
    assert summary["verified_not_kept"] == 4 and summary["cots_per_question"] == 1.0


def test_a_request_that_fails_for_good_is_a_reject_that_the_next_run_retries(tmp_path, arithmetic_data,
                                                                             fake_endpoint, empty_prompt_file):
    data, _ = arithmetic_data
    fake_endpoint.behaviour.fail_every = 1  # every request fails
    args = annotate_args(data, tmp_path / "out", fake_endpoint, empty_prompt_file, "--num-samples", "1", "--limit", "2",
                         "--retries", "1", "--backoff", "0")
    assert main(args) == 0
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["request_failed", "request_failed"]
    assert "after 2 tries" in rejects[0]["detail"]
    fake_endpoint.behaviour.fail_every = 0
    assert main(args) == 0
    assert len(json.loads((tmp_path / "out" / "annotated.json").read_text())) == 2
    assert (tmp_path / "out" / "rejects.jsonl").read_text() == ""


def test_chat_endpoints_get_messages(tmp_path, arithmetic_data, fake_endpoint):
    data, _ = arithmetic_data
    args = annotate_args(data, tmp_path / "out", fake_endpoint, "unused", "--chat", "--limit", "1", "--num-samples", "1")
    args.remove("--prompt-file"), args.remove("unused")  # the built-in few-shot examples, as chat turns
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "annotate.json").read_text())["covered"] == 1


@pytest.mark.parametrize("price, cost", [(None, None), (2.0, 0.136)])
def test_the_summary_counts_requests_tokens_and_cost(tmp_path, arithmetic_data, fake_endpoint, empty_prompt_file,
                                                     price, cost):
    data, _ = arithmetic_data
    extra = ["--price-per-1k", str(price)] if price else []
    args = annotate_args(data, tmp_path / "out", fake_endpoint, empty_prompt_file, "--num-samples", "1", "--limit", "4",
                         *extra)
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "annotate.json").read_text())
    assert (summary["requests"], summary["tokens_in"], summary["tokens_out"]) == (4, 40, 28)
    assert summary.get("cost") == cost
