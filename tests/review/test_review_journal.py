"""The journal: append-only, replayed at start, safe against a crash and against two tabs."""
import json
import os
from collections import Counter

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


def test_every_entry_names_its_reviewer_and_old_lines_replay_as_the_default_one(python_samples):
    journal = python_samples.with_name("test-samples.jsonl.review.jsonl")
    journal.write_text('{"event": "accept", "id": "svamp_2", "sample": 0, "time": "2024-01-01T00:00:00Z"}\n')
    collection = load_collection([python_samples])
    state = ReviewState(collection)
    assert state.review(1, 0).decision == "accepted" and state.review(1, 0, "local").decision == "accepted"
    state.act(collection.records[1], 1, Event("reject", "svamp_2", 1, reviewer="alice"))
    state.act(collection.records[1], 1, Event("flag", "svamp_2", 1))
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [line.get("reviewer") for line in lines] == [None, "alice", "local"]


def test_two_reviewers_decisions_on_one_sample_are_kept_apart(python_samples):
    collection = load_collection([python_samples])
    record = collection.records[1]
    state = ReviewState(collection)
    state.act(record, 0, Event("accept", record.id, 0, reviewer="alice"))
    state.act(record, 0, Event("reject", record.id, 0, reviewer="bob"))
    state.act(record, 0, Event("edit", record.id, 0, text="bob's fix", base=0, reviewer="bob"))
    state.act(record, 0, Event("edit", record.id, 0, text="alice's fix", base=0, reviewer="alice"))  # her own version 0
    restarted = ReviewState(load_collection([python_samples]))
    reviews = restarted.sample_reviews(1, 0)
    assert (reviews["alice"].decision, reviews["alice"].text) == ("accepted", "alice's fix")
    assert (reviews["bob"].decision, reviews["bob"].text) == ("rejected", "bob's fix")
    assert restarted.marks(1, "alice") == {"accepted", "edited"} and restarted.marks(1, "bob") == {"rejected", "edited"}
    assert restarted.reviewed_count("alice") == 1 and restarted.reviewed_count("local") == 0


def test_a_written_cot_is_the_next_sample_of_its_record_kept_by_its_writer(python_samples):
    collection = load_collection([python_samples])
    record = collection.records[0]  # svamp_1: one sample
    state = ReviewState(collection)
    first = state.act(record, 0, Event("write", record.id, 0, text="def solution():\n    return 7",
                                       status="correct", answer=7.0, reviewer="alice"))
    second = state.act(record, 5, Event("write", record.id, 5, text="def solution():\n    return 4 + 3",
                                        status="correct", answer=7.0, reviewer="bob"))
    assert (first.sample, second.sample) == (1, 2)  # numbered in the order written, whatever was asked
    restarted = ReviewState(load_collection([python_samples]))
    written = restarted.samples(restarted.collection.records[0])[1:]
    assert [(s.text[-5:], s.origin, s.author, s.status) for s in written] == [
        ("urn 7", "written", "alice", "correct"), ("4 + 3", "written", "bob", "correct")]
    assert restarted.review(0, 1, "alice").decision == "accepted" and restarted.review(0, 1, "bob").decision == ""
    assert "written" in restarted.marks(0, "carol")  # everyone sees a written CoT
    restarted.act(restarted.collection.records[0], 2, Event("reject", record.id, 2, reviewer="alice"))
    assert restarted.review(0, 2, "alice").decision == "rejected"


def test_a_write_numbered_against_the_data_is_skipped_on_replay(python_samples):
    journal = python_samples.with_name("test-samples.jsonl.review.jsonl")
    journal.write_text('{"event": "write", "id": "svamp_1", "sample": 7, "text": "x"}\n'
                       '{"event": "settle", "id": "svamp_1", "sample": 0, "text": "maybe"}\n')
    state = ReviewState(load_collection([python_samples]))
    assert len(state.samples(state.collection.records[0])) == 1 and state.settled == {}
    assert len(state.problems) == 2 and "written as sample 7" in state.problems[0]


def test_the_adjudicators_settle_is_replayed_apart_from_their_own_review(python_samples):
    collection = load_collection([python_samples])
    record = collection.records[1]
    state = ReviewState(collection)
    state.act(record, 0, Event("settle", record.id, 0, text="rejected", reviewer="carol"))
    restarted = ReviewState(load_collection([python_samples]))
    assert restarted.settled[1][0].text == "rejected" and restarted.settled[1][0].reviewer == "carol"
    assert restarted.review(1, 0, "carol") == SampleReview() and restarted.touched() == [(1, 0)]


def test_many_threads_acting_at_once_lose_no_entry(python_samples):
    """The app runs each action in a thread pool: every one of them lands, each on its own line."""
    import threading

    collection = load_collection([python_samples])
    state = ReviewState(collection)
    records = [r for r in collection.records if not r.error]

    def decide(name: str) -> None:
        for n in range(25):
            record = records[n % len(records)]
            state.act(record, 0, Event("accept" if n % 2 else "reject", record.id, 0, reviewer=name))

    threads = [threading.Thread(target=decide, args=(f"r{t}",)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = collection.sources[0].journal_path.read_text().splitlines()
    assert len(lines) == 100 and all(json.loads(line)["event"] in ("accept", "reject") for line in lines)
    assert Counter(json.loads(line)["reviewer"] for line in lines) == {f"r{t}": 25 for t in range(4)}
    assert ReviewState(load_collection([python_samples])).problems == []
