"""Each mistake a user can make with `reftune annotate` is one clear line and exit status 2, and
leaves no file behind that a later run would trust."""
import json
import os
import socket
import time

import pytest

from reftune.cli import main
from annotate_fixtures import arithmetic_data, empty_prompt_file, fake_endpoint  # noqa: F401 (fixtures)


def run_annotate(capsys, *args) -> str:
    """The one error line; fails unless the exit status is 2 and stderr is exactly one line."""
    assert main(["annotate", "--no-progress", *map(str, args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("reftune annotate: error: ")
    return err


def model_args(data, output, url, *extra):
    return ("--task", "arithmetic", "--data", data, "--output", output, "--source", "model", "--endpoint", url,
            "--api-model", "fake", "--retries", "1", "--backoff", "0", *extra)


def test_a_record_without_an_answer(tmp_path, capsys):
    data = tmp_path / "q.json"
    data.write_text(json.dumps([{"item_id": "a", "question": "1 + 1?", "answer_value": "2"},
                                {"item_id": "b", "question": "2 + 2?", "answer_value": ""}]))
    err = run_annotate(capsys, "--task", "gsm8k", "--data", data, "--output", tmp_path / "out")
    assert "record 1 of" in err and "missing answer" in err
    assert not (tmp_path / "out").exists()


def test_python_style_for_a_task_without_a_program_form(tmp_path, capsys, shared_data):
    err = run_annotate(capsys, "--task", "mathqa", "--style", "python", "--data",
                       shared_data / "mathqa" / "mathqa_test_set.json", "--output", tmp_path / "out")
    assert "has no program form" in err and "mathqa-numeric" in err


def test_python_style_from_notes_when_the_data_has_none(tmp_path, capsys, arithmetic_data):
    data, _ = arithmetic_data
    err = run_annotate(capsys, "--task", "arithmetic", "--style", "python", "--data", data, "--output", tmp_path / "o")
    assert "neither programs nor calculator notes" in err


@pytest.mark.parametrize("body, words", [("html", "HTML"), ("text", "not JSON")])
def test_an_endpoint_that_answers_html_or_plain_text(tmp_path, capsys, arithmetic_data, fake_endpoint, body, words):
    data, _ = arithmetic_data
    fake_endpoint.behaviour.body = body
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", fake_endpoint.url))
    assert words in err and fake_endpoint.url in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_model(tmp_path, capsys, arithmetic_data, fake_endpoint):
    data, _ = arithmetic_data
    fake_endpoint.behaviour.models = ("gpt-x", "other")
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", fake_endpoint.url))
    assert "unknown model 'fake'" in err and "gpt-x" in err


def test_a_missing_api_key_variable(tmp_path, capsys, arithmetic_data, fake_endpoint, monkeypatch):
    data, _ = arithmetic_data
    monkeypatch.delenv("REFTUNE_TEST_KEY", raising=False)
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", fake_endpoint.url, "--api-key-env", "REFTUNE_TEST_KEY"))
    assert "REFTUNE_TEST_KEY" in err and "not set" in err


def test_the_api_key_is_never_written_down(tmp_path, capsys, arithmetic_data, fake_endpoint, empty_prompt_file,
                                           monkeypatch):
    data, _ = arithmetic_data
    monkeypatch.setenv("REFTUNE_TEST_KEY", "sk-secret-value-123")
    args = model_args(data, tmp_path / "out", fake_endpoint.url, "--api-key-env", "REFTUNE_TEST_KEY", "--limit", "2",
                      "--prompt-file", empty_prompt_file)
    assert main(["annotate", "--no-progress", *map(str, args)]) == 0
    captured = capsys.readouterr()
    written = "".join(path.read_text() for path in (tmp_path / "out").iterdir())
    assert "sk-secret" not in written + captured.out + captured.err


def test_an_unreachable_endpoint_after_the_retries(tmp_path, capsys, arithmetic_data):
    data, _ = arithmetic_data
    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}/v1"
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", url))
    assert "cannot connect" in err and "after 2 tries" in err


def test_an_output_folder_holding_another_runs_journal(tmp_path, capsys, arithmetic_data, shared_data):
    data, _ = arithmetic_data
    gsm8k = shared_data / "gsm8k" / "test.jsonl"
    assert main(["annotate", "--task", "gsm8k", "--data", str(gsm8k), "--output", str(tmp_path / "out"),
                 "--limit", "3", "--no-progress"]) == 0
    before = (tmp_path / "out" / "journal.jsonl").read_bytes()
    err = run_annotate(capsys, "--task", "svamp", "--data", shared_data / "svamp" / "SVAMP.json", "--output",
                       tmp_path / "out")
    assert "holds another run's journal" in err and "task 'gsm8k' -> 'svamp'" in err
    assert (tmp_path / "out" / "journal.jsonl").read_bytes() == before
    assert main(["annotate", "--task", "gsm8k", "--data", str(gsm8k), "--output", str(tmp_path / "out"),
                 "--limit", "3", "--no-progress"]) == 0  # the same command resumes


def test_missing_options_and_a_file_as_output(tmp_path, capsys, arithmetic_data):
    data, _ = arithmetic_data
    assert "needs --output" in run_annotate(capsys, "--task", "arithmetic", "--data", data)
    assert "--source model needs" in run_annotate(capsys, "--task", "arithmetic", "--data", data, "--output", tmp_path,
                                                  "--source", "model")
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "is a file" in run_annotate(capsys, "--task", "arithmetic", "--data", data, "--output", a_file)
    assert os.path.getsize(a_file) == 0


def test_a_prompt_file_that_is_missing_or_holds_no_examples(tmp_path, capsys, arithmetic_data, fake_endpoint):
    data, _ = arithmetic_data
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", fake_endpoint.url, "--prompt-file", tmp_path / "no.txt"))
    assert "cannot read --prompt-file" in err
    prose = tmp_path / "prose.txt"
    prose.write_text("Solve these carefully, please.")
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", fake_endpoint.url, "--prompt-file", prose))
    assert "holds no 'Question:' / 'Answer reasoning:' examples" in err
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", fake_endpoint.url, "--prompt-file", "/dev/zero"))
    assert "--prompt-file /dev/zero is not a file" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("endpoint, words", [("not a url", "no http:// or https://"), ("http://[::1", "is not a URL"),
                                             ("htp:/x", "the scheme 'htp' is not http or https"),
                                             ("http:///v1", "names no host"), ("http://h:99999/v1", "is not a URL")])
def test_a_malformed_endpoint_is_refused_at_once(tmp_path, capsys, arithmetic_data, endpoint, words):
    data, _ = arithmetic_data
    started = time.monotonic()
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", endpoint))
    assert words in err and time.monotonic() - started < 5  # no retries for a URL no retry can fix
    assert not (tmp_path / "out").exists()


def test_data_that_is_neither_a_file_nor_a_folder(tmp_path, capsys):
    err = run_annotate(capsys, "--task", "gsm8k", "--data", "/dev/zero", "--output", tmp_path / "out")
    assert "/dev/zero is neither a file nor a folder" in err
    assert not (tmp_path / "out").exists()


def test_every_request_refused_with_a_400_stops_at_once_with_the_servers_message(tmp_path, capsys, arithmetic_data,
                                                                               fake_endpoint, empty_prompt_file):
    data, _ = arithmetic_data
    fake_endpoint.behaviour.refuse = "This model's maximum context length is 64 tokens"
    err = run_annotate(capsys, *model_args(data, tmp_path / "out", fake_endpoint.url, "--prompt-file",
                                           empty_prompt_file, "--concurrency", "1", "--num-samples", "1"))
    assert "HTTP 400: This model's maximum context length is 64 tokens" in err and "refused" in err
    assert len(fake_endpoint.requests) == 1  # the worker that met the refusal stops the others sending more


def test_a_400_after_answers_is_that_questions_reject_and_the_run_goes_on(tmp_path, capsys, arithmetic_data,
                                                                        fake_endpoint, empty_prompt_file):
    data, _ = arithmetic_data
    fake_endpoint.behaviour.refuse, fake_endpoint.behaviour.refuse_from = "prompt too long", 4
    args = model_args(data, tmp_path / "out", fake_endpoint.url, "--prompt-file", empty_prompt_file,
                      "--concurrency", "1", "--num-samples", "1")
    assert main(["annotate", "--no-progress", *map(str, args)]) == 0
    summary = json.loads((tmp_path / "out" / "annotate.json").read_text())
    assert summary["covered"] == 3 and summary["requests_failed"] == 9


def test_a_run_folder_of_another_command_is_refused_and_left_alone(tmp_path, capsys, shared_data):
    """As the training stages refuse one: run.json names the command that made the folder."""
    folder = tmp_path / "warmup"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"stage": "sft", "reftune": "0.1.0"}))
    (folder / "config.yaml").write_text("task: gsm8k\n")
    before = sorted(p.name for p in folder.iterdir())
    err = run_annotate(capsys, "--task", "gsm8k", "--data", shared_data / "gsm8k" / "test.jsonl", "--output", folder,
                       "--limit", "3")
    assert "holds a `reftune sft` run" in err and "choose a new --output" in err
    assert sorted(p.name for p in folder.iterdir()) == before
    (folder / "run.json").unlink()
    err = run_annotate(capsys, "--task", "gsm8k", "--data", shared_data / "gsm8k" / "test.jsonl", "--output", folder)
    assert "already holds other files (config.yaml)" in err


def test_an_annotate_folder_with_the_review_apps_files_resumes(tmp_path, capsys, shared_data):
    args = ["annotate", "--task", "gsm8k", "--data", str(shared_data / "gsm8k" / "test.jsonl"), "--output",
            str(tmp_path / "out"), "--limit", "3", "--no-progress"]
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["stage"] == "annotate"
    for name in ("annotated.json.review.jsonl", "annotated.reviewed.json", "annotated.decisions.csv"):
        (tmp_path / "out" / name).write_text("")
    assert main(args) == 0


def test_notes_on_a_file_without_any_is_one_line(tmp_path, capsys, arithmetic_data):
    data, _ = arithmetic_data
    err = run_annotate(capsys, "--task", "arithmetic", "--data", data, "--output", tmp_path / "out")
    assert "holds no CoTs" in err and "--source model" in err
    assert not (tmp_path / "out").exists()
