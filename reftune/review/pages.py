"""What each page shows, as plain values for its template: the list, one question, a sample card,
the charts, two runs compared. Routes call these; these call the session."""
from __future__ import annotations

from dataclasses import dataclass, replace

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from reftune.errors import ReftuneError
from reftune.review import charts, stats
from reftune.review.export import exported
from reftune.review.journal import DEFAULT_REVIEWER, SampleReview
from reftune.review.query import FILTERS, ORDERED_ELSEWHERE, SORTS, Query, neighbours, page_of
from reftune.review.records import Record, Sample
from reftune.review.session import Session
from reftune.review.suggest import Suggestion
from reftune.scoring.rewards import score_answer
from reftune.tasks.answers import ANSWER_TRIGGER

FILTER_LABELS = {"all": "all", "correct": "correct", "wrong": "wrong", "no_answer": "no answer",
                 "program_error": "program error", "error": "unreadable rows", "edited": "edited",
                 "accepted": "accepted", "rejected": "rejected", "flagged": "flagged",
                 "failing": "kept but failing the check", "written": "written by hand", "unreviewed": "unreviewed"}
# what the editor for a CoT written by hand starts from, by style
WRITE_TEMPLATES = {"python": "def solution():\n    \n    return result", "nl": f"\n{ANSWER_TRIGGER} "}
HIGHLIGHT = HtmlFormatter(nowrap=True)
OUTCOME_TONES = {"correct": "right", "wrong": "wrong", "program_error": "failed", "no_answer": "other"}


@dataclass(frozen=True)
class ListRow:
    """One line of the list."""

    record: Record
    marks: list[str]       # the review marks some sample has (edited, accepted, ...)
    solved: int            # samples that are right
    length: int            # mean characters per sample
    score: float | None = None  # the verifier's P(correct) of its least trusted sample (--verifier)


@dataclass(frozen=True)
class SampleView:
    """One sample card: the sample as written, the review, and the text on show (the edit, if any)."""

    record: Record
    number: int
    sample: Sample
    review: SampleReview
    verdict: object        # reftune.scoring.verification.Verdict of the text as written
    python: bool           # P-CoT: highlight as Python
    reward: float | None   # the input's reward; an edit's is the reward of its re-checked answer
    keeps_failing: bool    # Export writes kept samples that fail the check (--include-failing)
    score: float | None = None  # the verifier's P(correct) of the sample as written (--verifier)

    @property
    def failing(self) -> bool:
        """Kept (accepted, or edited and not rejected) but failing the check: the card warns."""
        return exported(self.review) and self.status != "correct"

    @property
    def text(self) -> str:
        return self.review.text if self.review.edited else self.sample.text

    @property
    def status(self) -> str:
        return self.review.status if self.review.edited else self.verdict.status

    @property
    def answer(self):
        return self.review.answer if self.review.edited else self.verdict.answer

    @property
    def code(self) -> Markup:
        return highlighted(self.text)


def highlighted(program: str) -> Markup:
    """Pygments escapes every token it writes, so its HTML may be marked safe (the model's text
    never is otherwise)."""
    return Markup(highlight(program, PythonLexer(), HIGHLIGHT))


def format_answer(answer) -> str:
    if answer is None:
        return "no answer"
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    return str(answer)


def progress(session: Session, reviewer: str = DEFAULT_REVIEWER) -> dict:
    """The header's counts: records of the reviewer's queue they reviewed, and the samples they keep
    that fail the check (Export leaves them out unless --include-failing)."""
    queue = session.queue(reviewer)
    return {"reviewed": session.state.reviewed_count(reviewer, queue),
            "total": len(session.records) if queue is None else len(queue),
            "failing": len(session.failing(reviewer)), "keeps_failing": session.include_failing,
            "loading": session.loading}


def list_page(session: Session, query: Query, reviewer: str = DEFAULT_REVIEWER) -> dict:
    session.catch_up()  # rows appended to a growing input since the last page
    session.state.refresh()
    matches = session.matches(query, reviewer)
    page = page_of(matches, query.page)
    failing = session.failing_records(reviewer)
    verifier = session.verifier
    rows = [ListRow(session.records[i], sorted(session.marks(i, failing, reviewer)),
                    sum(s.status == "correct" for s in session.records[i].samples), round(session.index.lengths[i]),
                    verifier.record_score(i) if verifier else None)
            for i in page.indices]
    sorts = {key: label for key, label in SORTS.items() if verifier or key not in ORDERED_ELSEWHERE}
    return {"query": query, "page": page, "rows": rows, "filters": [(f, FILTER_LABELS[f]) for f in FILTERS],
            "sorts": sorts, "progress": progress(session, reviewer), "sources": session.collection.sources,
            "problems": session.collection.problems, "scoring": verifier.progress() if verifier else None}


def sample_view(session: Session, record: Record, number: int, reviewer: str = DEFAULT_REVIEWER) -> SampleView:
    task = session.collection.tasks[record.source]
    sample, review = session.state.samples(record)[number], session.state.review(record.index, number, reviewer)
    if review.edited and not review.status:  # an edit journaled without its re-check: checked as Export does
        checked = session.edit_verdict(record, number, review)
        review = replace(review, status=checked.status, answer=checked.answer, detail=checked.detail)
    reward = sample.reward
    if review.edited and reward is not None:
        reward = score_answer(task, review.answer, record.gold)
    scores = session.verifier.sample_scores(record.index) if session.verifier else None
    return SampleView(record, number, sample, review, session.verdicts(record)[number], task.style == "python",
                      reward, session.include_failing, scores[number] if scores and number < len(scores) else None)


def record_page(session: Session, record: Record, query: Query, reviewer: str = DEFAULT_REVIEWER) -> dict:
    """The question, its gold, its samples (grouped by RL step for rollouts) and their answers, and
    whether none of them is right (then the page offers to write one)."""
    session.catch_up()
    session.state.refresh()
    task = session.collection.tasks[record.source]
    before, after = neighbours(session.matches(query, reviewer), record.index)
    views = [sample_view(session, record, n, reviewer) for n in range(len(session.state.samples(record)))]
    steps: dict = {}
    for view in views:  # CoTs written by hand come last, on their own
        steps.setdefault("written" if view.sample.origin == "written" else view.sample.step, []).append(view)
    rewards = {step: sum(v.sample.reward or 0.0 for v in group) / len(group) for step, group in steps.items()}
    return {"record": record, "source": session.collection.sources[record.source], "steps": steps,
            "step_rewards": rewards, "distribution": stats.answer_distribution(record, task.is_correct),
            "before": before, "after": after, "query": query, "progress": progress(session, reviewer),
            "task": task, "none_right": not record.error and not any(v.status == "correct" for v in views),
            "suggester": session.suggester}


def write_form(session: Session, record: Record, suggestion: Suggestion | None = None) -> dict:
    """The editor for a new CoT: a program or steps ending in the answer line, by style, typed from
    scratch or starting from a model's suggestion."""
    task = session.collection.tasks[record.source]
    return {"record": record, "python": task.style == "python", "trigger": ANSWER_TRIGGER,
            "text": WRITE_TEMPLATES[task.style] if suggestion is None else suggestion.text, "suggestion": suggestion}


def suggestions_page(session: Session, record: Record) -> dict:
    """K CoTs the model suggests for the question, checked (raises SuggestFailed when none came)."""
    if session.suggester is None:
        raise ReftuneError("this review has no model to ask: start it with --suggest-endpoint URL")
    if record.error:
        raise ReftuneError(f"record {record.index} could not be read ({record.error}): there is no question to ask")
    task = session.collection.tasks[record.source]
    return {"record": record, "found": session.suggester.suggest(task, record), "python": task.style == "python"}


def held_suggestion(session: Session, record: Record, suggestion_id: str | None) -> Suggestion | None:
    """The suggestion a Keep or Edit names (None when it names none)."""
    if not suggestion_id:
        return None
    if session.suggester is None:
        raise ReftuneError("this review has no model to ask: start it with --suggest-endpoint URL")
    return session.suggester.held(record, suggestion_id)


def stats_page(session: Session, source: int, reviewer: str = DEFAULT_REVIEWER) -> dict:
    """The input's charts (computed once per version of the data: they depend on it only), and for a
    team how far its reviewers agree and how far each has come (recomputed: they change with every
    decision)."""
    session.catch_up()
    records = [r for r in session.source_records(source) if not r.error]
    key = ("charts", source, session.collection.version)
    figures, lines, steps = session.remember(key, lambda: chart_figures(records))
    team = session.team
    return {"figures": figures, "lines": lines, "steps": steps, "source": session.collection.sources[source],
            "sources": session.collection.sources, "progress": progress(session, reviewer), "questions": len(records),
            "agreement": session.agreement(source) if team.shared else None,
            "reviewers": [(name, progress(session, name)) for name in team.reviewers] if team.shared else []}


def disagreements_page(session: Session, reviewer: str) -> dict:
    """The samples the reviewers decided differently, for the adjudicator to settle."""
    session.state.refresh()
    found = session.disagreements()
    return {"disagreements": found, "open": sum(d.settlement.how != "adjudicated" for d in found),
            "progress": progress(session, reviewer), "majority": session.team.export_majority}


def disagreement_of(session: Session, record: Record, number: int):
    """One sample's line of the disagreements page, after a settle."""
    return next((d for d in session.disagreements() if (d.record.index, d.number) == (record.index, number)), None)


def chart_figures(records: list[Record]) -> tuple[list, list, list]:
    """(bar charts, line charts by RL step, the steps' figures) of an input's good records."""
    right_bins, other_bins = length_bins(*stats.cot_lengths(records))
    outcomes = stats.outcome_counts(records)
    figures = [charts.bar_chart("Questions by outcome", outcomes, percent=True,
                                tones=[OUTCOME_TONES.get(bar.label, "") for bar in outcomes]),
               charts.bar_chart("Samples by status (the input's own check)", stats.status_counts(records),
                                percent=True),
               charts.bar_chart("Accuracy by question difficulty (length in words, fifths)",
                                stats.accuracy_by_difficulty(records), percent=True),
               charts.paired_bar_chart("CoT length in characters: right (green) and other (grey) samples",
                                       right_bins, other_bins, ("right", "other"))]
    if any(len(r.samples) > 1 for r in records):
        figures.insert(3, charts.bar_chart("Questions by the share of their samples that are right",
                                           stats.solve_rate_histogram(records), percent=True))
    steps = stats.by_step(records)
    xs = [float(s.step) for s in steps]
    lines = [charts.line_chart("Mean reward by RL step", xs, [s.mean_reward for s in steps]),
             charts.line_chart("Sample accuracy by RL step", xs, [s.accuracy for s in steps], "{:.0%}"),
             charts.line_chart("Mean CoT length by RL step (characters)", xs, [s.mean_length for s in steps],
                               "{:.0f}")] if steps else []
    return figures, lines, steps


def length_bins(right: list[float], other: list[float], bins: int = 10) -> tuple[list, list]:
    """Both series counted on the same bins (those spanning all lengths)."""
    every = right + other
    if not every:
        return [], []
    span = (min(every), max(every))
    return stats.histogram(right, bins, span), stats.histogram(other, bins, span)


@dataclass(frozen=True)
class SideBySide:
    """One question in both inputs, with the first few samples of each."""

    left: Record
    right: Record
    left_views: list[SampleView]
    right_views: list[SampleView]


SIDE_BY_SIDE_SAMPLES = 3


def first_views(session: Session, record: Record, reviewer: str) -> list[SampleView]:
    return [sample_view(session, record, n, reviewer) for n in range(min(len(record.samples), SIDE_BY_SIDE_SAMPLES))]


def compare_page(session: Session, a: int, b: int, record_id: str | None, reviewer: str = DEFAULT_REVIEWER) -> dict:
    """Two inputs on the same questions: counts, the flipped questions, one question side by side."""
    comparison = stats.compare(session.source_records(a), session.source_records(b))
    flipped = comparison.right_to_wrong + comparison.wrong_to_right
    chosen = record_id or (flipped[0][0].id if flipped else None)
    pair = None
    if chosen is not None:
        left, right = session.record_by_id(a, chosen), session.record_by_id(b, chosen)
        pair = SideBySide(left, right, first_views(session, left, reviewer), first_views(session, right, reviewer))
    return {"comparison": comparison, "a": session.collection.sources[a], "b": session.collection.sources[b],
            "pair": pair, "sources": session.collection.sources, "progress": progress(session, reviewer)}
