"""The journal: append-only, replayed at start, safe against a crash and against two tabs."""
import json
import os

import pytest

from reftune.errors import ReftuneError
from reftune.review.journal import Event, Journal, SampleReview, replay
from reftune.review.records import load_collection
from reftune.review.state import EditConflict, ReviewState
from review_inputs import python_samples  # noqa: F401 (fixtures)


def test_replay_applies_events_in_order_per_sample():
    lines = [json.dumps(e) for e in [
        {"event": "edit", "id": "a", "sample": 0, "text": "v1", "base": 0, "status": "wrong_answer"},
        {"event": "accept", "id": "a", "sample": 0}, {"event": "flag", "id": "a", "sample": 1},
        {"event": "edit", "id": "a", "sample": 0, "text": "v2", "base": 1, "status": "correct", "answer": 7.0},
        {"event": "reject", "id": "a", "sample": 0}, {"event": "note", "id": "a", "sample": 1, "text": "odd"},
        {"event": "unflag", "id": "a", "sample": 1}]]
    reviews, problems = replay(lines)
    assert problems == []
    assert reviews[("local", "a", 0)] == SampleReview("rejected", False, "", "v2", 2, "correct", 7.0, "")
    assert reviews[("local", "a", 1)] == SampleReview(flagged=False, note="odd")


def test_replay_skips_a_line_cut_short_by_a_crash_and_says_so():
    reviews, problems = replay(['{"event": "accept", "id": "a", "sample": 0}', '{"event": "reje', '{"event": "eat"}'])
    assert reviews[("local", "a", 0)].decision == "accepted"
    assert len(problems) == 2 and problems[0].startswith("line 2")


def test_an_append_after_a_cut_line_starts_on_its_own_line(tmp_path):
    journal = Journal(tmp_path / "x.review.jsonl")
    journal.path.write_text('{"event": "accept", "id": "a", "sample": 0}\n{"event": "rej')
    with journal.locked() as handle:
        assert journal.read_new() == ['{"event": "accept", "id": "a", "sample": 0}']  # the cut line waits
        journal.append(handle, Event("flag", "b", 0))
    reviews, problems = replay(journal.path.read_text().splitlines())
    assert reviews[("local", "a", 0)].decision == "accepted" and reviews[("local", "b", 0)].flagged and len(problems) == 1


def test_actions_are_journaled_and_a_restart_shows_the_same_state(python_samples):
    collection = load_collection([python_samples])
    state = ReviewState(collection)
    record = collection.records[0]
    state.act(record, 0, Event("edit", record.id, 0, text="def solution():\n    return 7", base=0, status="correct", answer=7.0))
    state.act(record, 0, Event("accept", record.id, 0))
    state.act(collection.records[1], 1, Event("reject", collection.records[1].id, 1))
    restarted = ReviewState(load_collection([python_samples]))
    assert restarted.review(0, 0) == state.review(0, 0) and restarted.review(0, 0).version == 1
    assert restarted.marks(0) == {"edited", "accepted"} and restarted.marks(1) == {"rejected"}
    assert restarted.reviewed_count() == 2
    assert python_samples.with_name("test-samples.jsonl.review.jsonl").is_file()


def test_the_source_file_is_never_rewritten(python_samples):
    before = python_samples.read_bytes()
    collection = load_collection([python_samples])
    ReviewState(collection).act(collection.records[0], 0, Event("reject", collection.records[0].id, 0))
    assert python_samples.read_bytes() == before


def test_an_edit_based_on_an_older_version_conflicts_and_writes_nothing(python_samples):
    collection = load_collection([python_samples])
    record = collection.records[0]
    state = ReviewState(collection)
    state.act(record, 0, Event("edit", record.id, 0, text="first tab", base=0))
    with pytest.raises(EditConflict) as conflict:
        state.act(record, 0, Event("edit", record.id, 0, text="second tab", base=0))
    assert conflict.value.current.text == "first tab"
    assert len(collection.sources[0].journal_path.read_text().splitlines()) == 1


def test_two_processes_on_one_file_see_each_others_actions_and_conflicts(python_samples):
    collection = load_collection([python_samples])
    record = collection.records[0]
    first, second = ReviewState(collection), ReviewState(collection)  # two `reftune review` processes
    first.act(record, 0, Event("edit", record.id, 0, text="first process", base=0))
    with pytest.raises(EditConflict) as conflict:
        second.act(record, 0, Event("edit", record.id, 0, text="second process", base=0))
    assert conflict.value.current.text == "first process"
    first.act(record, 0, Event("accept", record.id, 0))
    second.refresh()
    assert second.review(0, 0) == first.review(0, 0) and second.marks(0) == {"edited", "accepted"}


def test_an_action_on_a_missing_sample_is_refused(python_samples):
    collection = load_collection([python_samples])
    with pytest.raises(ReftuneError, match="has no sample 5"):
        ReviewState(collection).act(collection.records[0], 5, Event("accept", "svamp_1", 5))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write a read-only folder")
def test_a_read_only_folder_is_reported_and_refuses_actions(python_samples):
    collection = load_collection([python_samples])
    python_samples.parent.chmod(0o555)
    try:
        state = ReviewState(collection)
        assert state.read_only_sources() == [str(python_samples.parent)]
        with pytest.raises(ReftuneError, match="read-only"):
            state.act(collection.records[0], 0, Event("accept", "svamp_1", 0))
    finally:
        python_samples.parent.chmod(0o755)
