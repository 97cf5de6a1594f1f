"""Reviewing as a team, as plain Python: the options, the queues, and how decisions settle."""
from collections import Counter

import pytest

from reftune.errors import ReftuneError
from reftune.review.journal import SampleReview
from reftune.review.team import Settlement, Team, assign, decision_of, disagree, settle, team_from_options

ACCEPTED, REJECTED = SampleReview("accepted"), SampleReview("rejected")


@pytest.mark.parametrize("reviewers, overlap, adjudicator, message", [
    ("", None, None, "--reviewers needs at least one name"),
    (" , ", None, None, "--reviewers needs at least one name"),
    ("alice,bob", 3, None, "--overlap 3: each record can go to 1 to 2 reviewers"),
    ("alice,bob", 0, None, "--overlap 0"),
    ("alice,bob", None, "carol", "--adjudicator 'carol' is not one of the reviewers (alice, bob)"),
    ("alice,alice", None, None, "names alice twice"),
    ("alice,<b>", None, None, "reviewer name '<b>'"),
])
def test_each_bad_team_option_is_one_clear_message(reviewers, overlap, adjudicator, message):
    with pytest.raises(ReftuneError) as error:
        team_from_options(reviewers, overlap, adjudicator, False)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_team_options_without_reviewers_are_refused_and_no_options_is_one_person():
    with pytest.raises(ReftuneError, match="--overlap, --adjudicator needs --reviewers"):
        team_from_options(None, 2, "bob", False)
    with pytest.raises(ReftuneError, match="--export-majority needs --reviewers"):
        team_from_options(None, None, None, True)
    alone = team_from_options(None, None, None, False)
    assert alone.reviewers == ("local",) and not alone.shared
    team = team_from_options(" alice, bob ,carol", 2, "carol", True)
    assert team == Team(("alice", "bob", "carol"), 2, "carol", True) and team.shared


def test_an_unknown_reviewer_name_is_named_with_the_known_ones():
    with pytest.raises(ReftuneError, match=r"reviewer 'zed' is not one of the reviewers \(alice, bob\)"):
        Team(("alice", "bob")).check_name("zed")


@pytest.mark.parametrize("names, overlap, records", [(3, 2, 100), (2, 2, 7), (4, 1, 10), (5, 3, 11), (3, 3, 4)])
def test_assignment_gives_each_record_k_distinct_reviewers_and_balanced_queues(names, overlap, records):
    team = Team(tuple(f"r{n}" for n in range(names)), overlap)
    assignment = assign(team, records)
    assert all(len(set(assignment.reviewers_of(i))) == overlap for i in range(records))
    sizes = [len(assignment.queue(name)) for name in team.reviewers]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == records * overlap
    for name in team.reviewers:  # the queues and the records' reviewers say the same
        assert assignment.queue(name) == {i for i in range(records) if name in assignment.reviewers_of(i)}


def test_assignment_is_deterministic_and_ignores_the_order_names_are_given_in():
    first = assign(Team(("carol", "alice", "bob"), 2), 50)
    again = assign(Team(("alice", "bob", "carol"), 2), 50)
    assert first == again
    grown = assign(Team(("alice", "bob", "carol"), 2), 60)  # rows appended later
    assert grown.by_record[:50] == first.by_record


def test_with_overlap_one_the_queues_split_the_records():
    assignment = assign(Team(("alice", "bob")), 6)
    assert assignment.queue("alice") == {0, 2, 4} and assignment.queue("bob") == {1, 3, 5}
    assert assignment.queue("nobody") == frozenset()


def test_what_a_review_decides():
    assert decision_of(ACCEPTED) == "accepted" and decision_of(REJECTED) == "rejected"
    assert decision_of(SampleReview(text="fixed", version=1)) == "accepted"  # an edit kept
    assert decision_of(SampleReview("rejected", text="fixed", version=1)) == "rejected"
    assert decision_of(SampleReview(flagged=True)) == ""


def test_settle_agreement_disagreement_majority_and_the_adjudicator():
    assert settle({}) is None and settle({"alice": SampleReview(flagged=True)}) is None
    assert settle({"alice": ACCEPTED}) == Settlement("agreed", "accepted", ("alice",))
    assert settle({"alice": REJECTED, "bob": REJECTED}) == Settlement("agreed", "rejected", ())
    split = {"alice": ACCEPTED, "bob": REJECTED, "carol": ACCEPTED, "dan": SampleReview(note="hm")}
    assert settle(split) == Settlement("unsettled", "", ())
    assert settle(split, majority=True) == Settlement("majority", "accepted", ("alice", "carol"))
    tie = {"alice": ACCEPTED, "bob": REJECTED}
    assert settle(tie, majority=True).how == "unsettled"  # no strict majority
    assert settle(tie, adjudicated="rejected") == Settlement("adjudicated", "rejected", ())
    assert settle(split, adjudicated="accepted", majority=True) == Settlement("adjudicated", "accepted",
                                                                             ("alice", "carol"))
    assert disagree(split) and not disagree({"alice": ACCEPTED, "bob": SampleReview(text="x", version=1)})


def test_settled_counts_over_many_samples():
    samples = [{"a": ACCEPTED, "b": ACCEPTED}, {"a": ACCEPTED, "b": REJECTED}, {"a": REJECTED}]
    assert Counter(settle(s).how for s in samples) == {"agreed": 2, "unsettled": 1}
