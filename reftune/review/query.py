"""The list's filters, text search, sorts and paging: plain functions over an index built as the
records are read, so that a page of 100,000 records costs one pass over precomputed fields.

>>> Query.from_params({"filter": "wrong", "sort": "-solved", "page": "2"})
Query(filter='wrong', search='', sort='-solved', page=2)
>>> page = page_of(list(range(95)), 2, 50)
>>> page.indices[:3], page.number, page.pages, page.total
([50, 51, 52], 2, 2, 95)
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from reftune.errors import ReftuneError
from reftune.review.records import OUTCOMES, Record
from reftune.review.state import MARKS

# "failing": a sample the reviewer kept fails the check (the session knows it, not the review state)
MARK_FILTERS = MARKS + ("failing",)
FILTERS = ("all",) + OUTCOMES + MARK_FILTERS + ("unreviewed",)
SORTS = {"file": "file order", "length": "shortest CoTs first", "-length": "longest CoTs first",
         "solved": "least often solved first", "-solved": "most often solved first",
         "doubt": "most doubtful first (verifier)"}
ORDERED_ELSEWHERE = ("doubt",)  # sorts the index does not hold: the session makes their order (--verifier)
PAGE_SIZE = 50
MAX_SEARCH = 200  # characters: a search box, not a document


@dataclass(frozen=True)
class Query:
    """What the list shows: parsed from the URL, so a page can be reloaded or shared."""

    filter: str = "all"   # one of FILTERS
    search: str = ""      # case-insensitive text in the id, question or samples
    sort: str = "file"    # one of SORTS
    page: int = 1

    @classmethod
    def from_params(cls, params) -> Query:
        """Raises ReftuneError, with the allowed values, for a value the list does not know."""
        chosen = params.get("filter") or "all"
        sort = params.get("sort") or "file"
        if chosen not in FILTERS:
            raise ReftuneError(f"unknown filter {chosen[:40]!r}: use one of {', '.join(FILTERS)}")
        if sort not in SORTS:
            raise ReftuneError(f"unknown sort {sort[:40]!r}: use one of {', '.join(SORTS)}")
        try:
            page = int(params.get("page") or 1)
        except ValueError:
            raise ReftuneError(f"page must be a whole number, got {params.get('page')[:40]!r}") from None
        return cls(chosen, (params.get("search") or "").strip()[:MAX_SEARCH], sort, max(page, 1))

    def url_params(self, **changes) -> str:
        """The query string of this query with `changes`, defaults left out."""
        values = {"filter": self.filter, "search": self.search, "sort": self.sort, "page": self.page, **changes}
        defaults = {"filter": "all", "search": "", "sort": "file", "page": 1}
        return urlencode({key: value for key, value in values.items() if value != defaults[key]})


class Index:
    """Fields of every record, computed once as it is read (position i = record index i); the sort
    orders are computed when asked for, again after records were added or grew."""

    def __init__(self):
        self.outcomes: list[str] = []      # Record.outcome
        self.solve_rates: list[float] = []  # fraction of samples correct; -1 for error rows
        self.lengths: list[float] = []     # mean characters per sample
        self.texts: list[str] = []         # lower-cased id, question and samples: what search looks in
        self.sources: list[int] = []       # Record.source: "file order" is each input's in turn
        self.count = 0                     # records indexed: set last, so every field holds them
        self.version = 0                   # bumped by every change: the orders depend on it
        self._orders: dict[str, tuple[int, list[int]]] = {}  # sort -> (version, record indices in order)

    def add(self, records) -> None:
        """Index records that follow the ones indexed (their index is the next position)."""
        for record in records:
            self.outcomes.append(record.outcome)
            self.solve_rates.append(solve_rate(record))
            self.lengths.append(mean_length(record))
            self.texts.append(searchable(record))
            self.sources.append(record.source)
        self.count = len(self.texts)
        self.version += 1

    def replace(self, records) -> None:
        """Index again records that grew (a rollouts question's later steps)."""
        for record in records:
            i = record.index
            self.outcomes[i], self.solve_rates[i] = record.outcome, solve_rate(record)
            self.lengths[i], self.texts[i] = mean_length(record), searchable(record)
        self.version += 1

    def order(self, sort: str) -> list[int]:
        """Record indices in a SORTS order the index holds (not ORDERED_ELSEWHERE); ties (and "file")
        keep each input's file order."""
        version, found = self._orders.get(sort, (None, None))
        if version == self.version:
            return found
        version, positions = self.version, range(self.count)
        found = sorted(positions, key=self.sources.__getitem__)
        if sort != "file":
            key = {"length": self.lengths, "solved": self.solve_rates}[sort.lstrip("-")]
            found = sorted(found, key=(lambda i: -key[i]) if sort.startswith("-") else key.__getitem__)
        self._orders[sort] = (version, found)
        return found


def solve_rate(record: Record) -> float:
    if not record.samples:
        return -1.0
    return sum(sample.status == "correct" for sample in record.samples) / len(record.samples)


def mean_length(record: Record) -> float:
    return sum(len(sample.text) for sample in record.samples) / max(len(record.samples), 1)


def searchable(record: Record) -> str:
    return "\n".join([record.id, record.question, *(s.text for s in record.samples), record.error]).lower()


def build_index(records) -> Index:
    index = Index()
    index.add(records)
    return index


def select(index: Index, query: Query, marks_of, order: list[int] | None = None) -> list[int]:
    """Record indices the query matches, in its sort order (or in `order`, for a sort the index does
    not hold). marks_of(i) -> the record's MARK_FILTERS."""
    order = index.order(query.sort) if order is None else order
    if query.filter in OUTCOMES:
        order = [i for i in order if index.outcomes[i] == query.filter]
    elif query.filter in MARK_FILTERS:
        order = [i for i in order if query.filter in marks_of(i)]
    elif query.filter == "unreviewed":
        order = [i for i in order if not {"accepted", "rejected"} & marks_of(i)]
    if query.search:
        needle = query.search.lower()
        texts = index.texts
        order = [i for i in order if needle in texts[i]]
    return order


@dataclass(frozen=True)
class Page:
    indices: list[int]   # record indices on this page
    number: int          # 1-based, clamped to the last page
    pages: int
    total: int           # records the query matches


def page_of(matches: list[int], number: int, size: int = PAGE_SIZE) -> Page:
    pages = max(1, -(-len(matches) // size))
    number = min(max(number, 1), pages)
    return Page(matches[(number - 1) * size:number * size], number, pages, len(matches))


def neighbours(matches: list[int], index: int) -> tuple[int | None, int | None]:
    """The records before and after `index` in the list (None at the ends, or when the record is
    not in the list any more: then the list's first record is next)."""
    try:
        position = matches.index(index)
    except ValueError:
        return None, (matches[0] if matches else None)
    before = matches[position - 1] if position > 0 else None
    after = matches[position + 1] if position + 1 < len(matches) else None
    return before, after
