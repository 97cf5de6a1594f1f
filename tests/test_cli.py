import json

from reftune.cli import main


def test_check_scores_every_gold_cot(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}) + "\n")
    assert main(["check", "--task", "gsm8k", "--data", str(path)]) == 0
    assert "1 examples, 1 with a gold CoT, 1 of them scored 1.0" in capsys.readouterr().out


def test_check_fails_when_a_gold_does_not_score(tmp_path, capsys):
    path = tmp_path / "svamp.json"
    path.write_text(json.dumps([{"Body": "b.", "Question": "q?", "Equation": "( 4.0 - 2.0 )", "Answer": 1.0}]))
    assert main(["check", "--task", "svamp", "--style", "python", "--data", str(path)]) == 1
    assert "not 1.0: svamp_0" in capsys.readouterr().out


def test_a_users_mistake_is_one_line_without_a_trace(tmp_path, capsys):
    assert main(["check", "--task", "gsm8k", "--data", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune check: error: data file") and "Traceback" not in err
    assert err.count("\n") == 1


def test_demo_runs_the_existing_end_to_end_path(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "not built yet" in out
    assert "arithmetic (python, test): 500 examples, 500 with a gold CoT, 500 of them scored 1.0" in out
