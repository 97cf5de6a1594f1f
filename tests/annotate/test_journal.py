"""The journal: replay is the state; a line cut short by a kill is skipped and never glued to the next."""
import json

import pytest

from reftune.annotate.journal import Journal, check_same_run, cache_key, replay
from reftune.errors import ReftuneError


def test_replay_keeps_the_latest_verdict_per_sample_and_counts_requests(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"event": "start", "run": {"task": "gsm8k"}})
    journal.append({"event": "rejected", "item_id": "q1", "sample_index": 0, "reason": "request_failed", "detail": "500"})
    journal.append({"event": "response", "item_id": "q1", "sample_index": 0, "cache_key": "k", "text": "t",
                    "tokens_in": 3, "tokens_out": 4})
    journal.append({"event": "verified", "item_id": "q1", "sample_index": 0, "reason": "correct", "detail": "",
                    "answer_cot": "c", "kept": True})
    journal.append({"event": "finish", "seconds": 1.5, "interrupted": False})
    journal.close()
    state = replay(tmp_path / "journal.jsonl")
    assert state.run == {"task": "gsm8k"} and state.responses["k"].text == "t"
    assert (state.requests, state.tokens_in, state.tokens_out, state.seconds) == (2, 3, 4, 1.5)
    assert state.sample_done("q1", 0) and not state.sample_done("q1", 1)
    assert [e["answer_cot"] for e in state.kept("q1")] == ["c"]


def test_a_line_cut_short_by_a_kill_is_skipped_and_the_next_event_starts_on_its_own_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps({"event": "start", "run": {}}) + "\n" + '{"event": "response", "item_id": "q')
    journal = Journal(path)
    journal.append({"event": "rejected", "item_id": "q2", "sample_index": 0, "reason": "no_answer", "detail": ""})
    journal.close()
    state = replay(path)
    assert state.responses == {} and state.sample_done("q2", 0)
    assert path.read_text().splitlines()[-1].startswith('{"time"')


def test_a_failed_request_is_not_a_finished_sample():
    from reftune.annotate.journal import AnnotationState

    state = AnnotationState()
    state.record({"event": "rejected", "item_id": "q", "sample_index": 0, "reason": "request_failed"})
    assert not state.sample_done("q", 0) and state.requests == 1


def test_another_runs_journal_is_refused_naming_what_changed(tmp_path):
    state = replay(tmp_path / "none.jsonl")
    check_same_run(state, {"task": "svamp"}, tmp_path)  # an empty folder takes any run
    state.run = {"task": "gsm8k", "style": "nl"}
    with pytest.raises(ReftuneError, match="task 'gsm8k' -> 'svamp'; style 'nl' -> 'python'"):
        check_same_run(state, {"task": "svamp", "style": "python"}, tmp_path)


def test_the_cache_key_depends_on_model_prompt_sampling_and_sample_index():
    key = cache_key("m", "p", {"temperature": 1.0}, 0)
    assert key == cache_key("m", "p", {"temperature": 1.0}, 0)
    assert len({key, cache_key("m2", "p", {"temperature": 1.0}, 0), cache_key("m", "p2", {"temperature": 1.0}, 0),
                cache_key("m", "p", {"temperature": 0.5}, 0), cache_key("m", "p", {"temperature": 1.0}, 1)}) == 5
