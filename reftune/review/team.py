"""Reviewing as a team: who reviews which records, and which decision a sample ends with when
several people decided it. Plain Python: the app and the export ask these functions.

Each record goes to `overlap` reviewers, round-robin over the reviewers' names in sorted order, so the
same names on the same data always give the same queues and every queue is within one record of
the others:

>>> queues = assign(Team(("bob", "alice", "carol"), overlap=2), 6)
>>> [sorted(queues.reviewers_of(index)) for index in range(3)]
[['alice', 'bob'], ['alice', 'carol'], ['bob', 'carol']]
>>> [len(queues.queue("alice")), len(queues.queue("bob")), len(queues.queue("carol"))]
[4, 4, 4]

A sample's decisions settle by agreement; a disagreement waits for the adjudicator (or, when the
export is told to, goes to a strict majority):

>>> settle({"alice": SampleReview("accepted"), "bob": SampleReview("rejected")})
Settlement(how='unsettled', decision='', keepers=())
>>> settle({"alice": SampleReview("accepted"), "bob": SampleReview("rejected")}, adjudicated="accepted").how
'adjudicated'
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from reftune.errors import ReftuneError
from reftune.review.journal import DEFAULT_REVIEWER, SampleReview

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # goes into links, the journal and file names
SETTLED_HOW = ("agreed", "adjudicated", "majority", "unsettled")


@dataclass(frozen=True)
class Team:
    """Who reviews: one person (the default reviewer) unless `reftune review --reviewers` names more."""

    reviewers: tuple[str, ...] = (DEFAULT_REVIEWER,)
    overlap: int = 1                 # reviewers per record: 2 or more measures agreement
    adjudicator: str | None = None   # settles disagreements; one of the reviewers
    export_majority: bool = False    # Export takes a strict majority where nobody settled a disagreement

    def __post_init__(self):
        if not self.reviewers:
            raise ReftuneError("--reviewers needs at least one name, e.g. --reviewers alice,bob")
        for name in self.reviewers:
            if not NAME.match(name):
                raise ReftuneError(f"reviewer name {name[:60]!r}: use letters, digits, '_', '.' or '-' "
                                   f"(up to 40, starting with a letter or digit), e.g. --reviewers alice,bob")
        repeated = sorted({name for name in self.reviewers if self.reviewers.count(name) > 1})
        if repeated:
            raise ReftuneError(f"--reviewers names {', '.join(repeated)} twice: give each reviewer once")
        if not 1 <= self.overlap <= len(self.reviewers):
            raise ReftuneError(f"--overlap {self.overlap}: each record can go to 1 to {len(self.reviewers)} "
                               f"reviewers (there are {len(self.reviewers)}: {', '.join(self.reviewers)})")
        if self.adjudicator is not None:
            self.check_name(self.adjudicator, "--adjudicator")

    def check_name(self, name: str, what: str = "reviewer") -> str:
        if name not in self.reviewers:
            raise ReftuneError(f"{what} {name[:60]!r} is not one of the reviewers ({', '.join(self.reviewers)}): "
                               f"name one of them, or add it to --reviewers")
        return name

    @property
    def shared(self) -> bool:
        """Several reviewers: agreement, disagreements and settling mean something."""
        return len(self.reviewers) > 1


def team_from_options(reviewers: str | None, overlap: int | None, adjudicator: str | None,
                      export_majority: bool) -> Team:
    """The Team the command line asks for; one clear line for options that need --reviewers."""
    if reviewers is None:
        needs = [flag for flag, given in (("--overlap", overlap is not None), ("--adjudicator", adjudicator),
                                          ("--export-majority", export_majority)) if given]
        if needs:
            raise ReftuneError(f"{', '.join(needs)} needs --reviewers: name the reviewers, e.g. --reviewers alice,bob")
        return Team()
    names = tuple(name.strip() for name in reviewers.split(",") if name.strip())
    return Team(names, 1 if overlap is None else overlap, adjudicator, export_majority)


@dataclass(frozen=True)
class Assignment:
    """Which reviewers each record goes to (record index -> names), and each reviewer's queue."""

    by_record: tuple[tuple[str, ...], ...]
    queues: dict  # name -> frozenset of record indices

    def reviewers_of(self, index: int) -> tuple[str, ...]:
        return self.by_record[index]

    def queue(self, reviewer: str) -> frozenset:
        return self.queues.get(reviewer, frozenset())


def assign(team: Team, records: int, earlier: Assignment | None = None) -> Assignment:
    """Record i goes to the reviewers at places i*K .. i*K+K-1 (mod R) of the sorted names: K distinct
    reviewers per record, queues that differ by at most one record, and records appended later
    leave the earlier ones where they were. earlier: the assignment of the first records (of a file
    still being read), which the others join without computing it again."""
    names, k = sorted(team.reviewers), team.overlap
    first = len(earlier.by_record) if earlier else 0
    added = tuple(tuple(names[(index * k + j) % len(names)] for j in range(k)) for index in range(first, records))
    queues = {name: [] for name in names}
    for index, chosen in enumerate(added, start=first):
        for name in chosen:
            queues[name].append(index)
    before = earlier.queues if earlier else {}
    return Assignment((earlier.by_record if earlier else ()) + added,
                      {name: before.get(name, frozenset()) | frozenset(indices) for name, indices in queues.items()})


def decision_of(review: SampleReview) -> str:
    """What a review says for the export: "accepted" (accepted, or edited and not rejected),
    "rejected", or "" (undecided)."""
    if review.decision == "accepted" or (review.edited and review.decision != "rejected"):
        return "accepted"
    return review.decision


@dataclass(frozen=True)
class Settlement:
    """The decision a sample ends with, and how it was reached."""

    how: str                    # one of SETTLED_HOW
    decision: str               # "accepted", "rejected", or "" (unsettled)
    keepers: tuple[str, ...]    # the reviewers whose versions Export writes (they kept it)


def settle(reviews: dict[str, SampleReview], adjudicated: str = "", majority: bool = False) -> Settlement | None:
    """reviews: reviewer -> review of one sample. The adjudicator's decision wins; else the
    reviewers who decided agree; else, with majority, more than half of them; else unsettled.
    None when nobody decided."""
    decided = {name: decision_of(review) for name, review in reviews.items() if decision_of(review)}
    if not decided and not adjudicated:
        return None
    keepers = tuple(sorted(name for name, decision in decided.items() if decision == "accepted"))
    if adjudicated:
        return Settlement("adjudicated", adjudicated, keepers if adjudicated == "accepted" else ())
    chosen = set(decided.values())
    if len(chosen) == 1:
        decision = chosen.pop()
        return Settlement("agreed", decision, keepers if decision == "accepted" else ())
    if majority:
        for decision in ("accepted", "rejected"):
            if 2 * list(decided.values()).count(decision) > len(decided):
                return Settlement("majority", decision, keepers if decision == "accepted" else ())
    return Settlement("unsettled", "", ())


def disagree(reviews: dict[str, SampleReview]) -> bool:
    """Two reviewers decided the sample differently (one accepted or edited it, one rejected it)."""
    return len({decision_of(review) for review in reviews.values()} - {""}) > 1
