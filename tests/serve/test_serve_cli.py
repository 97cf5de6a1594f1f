"""`reftune serve` mistakes: one line, exit status 2."""
import socket
import time

import pytest

from reftune.cli import main


def one_error_line(capsys, *args) -> str:
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reftune serve: error: ") and "Traceback" not in err
    return err


def test_a_port_in_use_or_out_of_range_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert "Address already in use" in one_error_line(capsys, "tiny", "--port", str(port))
    assert "--port must be in 0..65535" in one_error_line(capsys, "tiny", "--port", "70000")
    assert "serve needs a model" in one_error_line(capsys)


@pytest.mark.slow
def test_an_unknown_model_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what an offline machine answers, without waiting for it
    assert "unknown model" in one_error_line(capsys, "no-such-org/no-such-model", "--port", "0")


def test_a_run_folder_points_at_the_model_inside_it(capsys, tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "config.json").write_text("{}")
    (tmp_path / "run.json").write_text('{"stage": "sft"}')
    assert f"is a reftune run folder, not a model folder: name the model inside it, {tmp_path / 'best'}" in \
        one_error_line(capsys, str(tmp_path), "--port", "0")


def test_a_path_that_does_not_exist_is_refused_without_asking_the_hub(capsys, tmp_path, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked about a path")

    monkeypatch.setattr("reftune.model.loading.hub_reachable", no_hub)
    started = time.monotonic()
    err = one_error_line(capsys, str(tmp_path / "no" / "model"), "--port", "0")
    assert f"model folder '{tmp_path / 'no' / 'model'}' does not exist" in err and time.monotonic() - started < 5


def test_a_host_that_cannot_be_resolved_is_named_as_the_problem(capsys):
    err = one_error_line(capsys, "tiny", "--host", "nonexistent.invalid", "--port", "0")
    assert "the host 'nonexistent.invalid' cannot be resolved" in err and "--port" not in err


def test_a_model_folder_is_served_under_its_own_name_not_its_path(tmp_path, monkeypatch):
    from reftune.serve.app import default_served_name

    folder = tmp_path / "runs" / "warmup-best"
    folder.mkdir(parents=True)
    assert default_served_name(str(folder)) == default_served_name(f"{folder}/") == "warmup-best"
    monkeypatch.chdir(folder)
    assert default_served_name(".") == "warmup-best"
    assert default_served_name("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # a hub id as given
    assert default_served_name("tiny") == "tiny"
