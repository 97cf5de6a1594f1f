import json

import pytest

from reftune.cli import main

SUBCOMMANDS = ["demo", "sft", "rl", "eval", "sample", "offline-st", "online-st", "verifier", "compare", "annotate",
               "serve", "review", "check"]


def test_check_scores_every_gold_cot(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}) + "\n")
    assert main(["check", "--task", "gsm8k", "--data", str(path)]) == 0
    assert "1 examples, 1 with a gold CoT: 1 correct" in capsys.readouterr().out


def test_check_fails_when_a_gold_does_not_score(tmp_path, capsys):
    path = tmp_path / "svamp.json"
    path.write_text(json.dumps([{"Body": "b.", "Question": "q?", "Equation": "( 4.0 - 2.0 )", "Answer": 1.0}]))
    assert main(["check", "--task", "svamp", "--style", "python", "--data", str(path)]) == 1
    assert "svamp_0: wrong_answer: answer 2 but the gold is 1" in capsys.readouterr().out


def test_check_reports_a_wrong_stated_step_with_its_line(tmp_path, capsys):
    path = tmp_path / "svamp.json"
    path.write_text(json.dumps([{"Body": "b.", "Question": "q?", "Equation": "( 4.0 - 2.0 ) + 3.0", "Answer": 1.0},
                                {"Body": "c.", "Question": "q?", "Equation": "( 4.0 - 2.0 )", "Answer": 2.0}]))
    assert main(["check", "--task", "svamp", "--data", str(path)]) == 1
    out = capsys.readouterr().out
    assert "2 with a gold CoT: 1 correct, 1 wrong_step" in out
    assert "svamp_0: wrong_step: line 1: ( 4.0 - 2.0 ) + 3.0 gives 1 (is 5)" in out


def test_a_users_mistake_is_one_line_without_a_trace(tmp_path, capsys):
    assert main(["check", "--task", "gsm8k", "--data", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune check: error: data file") and "Traceback" not in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_check_refuses_a_limit_below_one_as_annotate_does(tmp_path, capsys, limit):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}) + "\n")
    assert main(["check", "--task", "gsm8k", "--data", str(path), "--limit", limit]) == 2
    err = capsys.readouterr().err
    assert err == f"reftune check: error: --limit must be at least 1 (leave it out for all examples), got {limit}\n"


def test_check_names_a_data_file_by_its_name_not_the_default_split(capsys, shared_data):
    assert main(["check", "--task", "gsm8k", "--data", str(shared_data / "gsm8k" / "test.jsonl"), "--limit", "5"]) == 0
    assert capsys.readouterr().out.startswith("gsm8k (nl, test.jsonl): 5 examples")
    assert main(["check", "--task", "gsm8k", "--data", str(shared_data / "gsm8k"), "--split", "test", "--limit", "5"]) == 0
    assert capsys.readouterr().out.startswith("gsm8k (nl, test): 5 examples")


def test_help_lists_every_subcommand(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "--" in capsys.readouterr().out


def test_yaml_config_sets_options_and_flags_override_it(tmp_path, capsys):
    import yaml

    config = tmp_path / "run.yaml"
    config.write_text("task: arithmetic\nmodel: tiny\nlimit: 2\nmax_new_tokens: 4\nsplit: train\n"
                      "report-to: jsonl\n")
    out_dir = tmp_path / "out"
    assert main(["eval", "--config", str(config), "--split", "dev", "--output", str(out_dir),
                 "--no-progress"]) == 0
    saved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert saved["split"] == "dev" and saved["limit"] == 2 and saved["max_new_tokens"] == 4
    assert "top1_accuracy" in capsys.readouterr().out


def test_a_stage_says_in_one_line_where_its_config_went_and_prints_it_with_verbose(tmp_path, capsys):
    command = ["eval", "--model", "tiny", "--limit", "1", "--max-new-tokens", "2", "--split", "dev", "--report-to", "jsonl"]
    assert main([*command, "--output", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"Config: {tmp_path / 'a' / 'config.yaml'}" in out and "max_new_tokens: 2" not in out
    assert "max_new_tokens: 2" in (tmp_path / "a" / "config.yaml").read_text()
    assert main([*command, "--output", str(tmp_path / "b"), "--verbose"]) == 0
    assert "max_new_tokens: 2" in capsys.readouterr().out


def test_unknown_config_keys_and_bad_values_are_one_line_errors(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 0.1\n")
    assert main(["sft", "--config", str(config)]) == 2
    assert "unknown options ['learning_rat']" in capsys.readouterr().err
    config.write_text("epochs: many\n")
    assert main(["sft", "--config", str(config)]) == 2
    assert "epochs should be int, got 'many'" in capsys.readouterr().err


def test_unknown_model_at_the_cli_is_one_line_without_a_trace(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "--model", "no-such-org/nowhere", "--limit", "1", "--output",
                 str(tmp_path / "o"), "--report-to", "jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune eval: error: unknown model") and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["offline-st"], "--sampler"),
    (["verifier", "--samples", "x.jsonl"], "--sampler"),
    (["online-st", "--sample-weight", "2"], "sample_weight"),
    (["compare", "--runs", "runs/sft"], "name=folder"),
    (["eval", "--mode", "rerank", "--temperature", "1", "--num-samples", "4"], "--verifier"),
])
def test_baseline_commands_refuse_bad_input_in_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_model_path_that_does_not_exist_is_one_line_for_every_command(tmp_path, capsys):
    missing = str(tmp_path / "no" / "model")
    for command in (["sft", "--model", missing, "--output", str(tmp_path / "sft")],
                    ["eval", "--model", missing, "--output", str(tmp_path / "eval")]):
        assert main([*command, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"model folder '{missing}' does not exist" in err
