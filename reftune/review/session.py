"""One review session: the loaded collection, its index, the live review state and the re-checks
already run. The pages ask it questions; it knows nothing about HTTP."""
from __future__ import annotations

import threading
from collections import OrderedDict

from reftune.errors import ReftuneError
from reftune.review.checking import TRAINING_ORIGINS, check_cots
from reftune.review.query import Query, build_index, select
from reftune.review.records import Collection, Record
from reftune.review.state import MARKS, ReviewState

CACHED_QUERIES = 32


class UnknownRecord(ReftuneError):
    """A URL names a record the session does not hold."""


class Session:
    """What the app serves, loaded once at start."""

    def __init__(self, collection: Collection):
        self.collection = collection
        self.records = collection.records
        self.index = build_index(collection.records)
        self.state = ReviewState(collection)
        self._matches: OrderedDict = OrderedDict()
        self._verdicts: dict[int, list] = {}
        self._remembered: dict = {}
        self._lock = threading.Lock()
        self._by_id = {(r.source, r.id): r.index for r in collection.records if not r.error}

    def record(self, index: int) -> Record:
        if not 0 <= index < len(self.records):
            raise UnknownRecord(f"no record {index}: this review holds records 0 to {len(self.records) - 1}")
        return self.records[index]

    def record_by_id(self, source: int, record_id: str) -> Record:
        index = self._by_id.get((source, record_id))
        if index is None:
            raise UnknownRecord(f"no question {record_id[:80]!r} in input {source}")
        return self.records[index]

    def source_records(self, source: int) -> list[Record]:
        return [record for record in self.records if record.source == source]

    def matches(self, query: Query) -> list[int]:
        """Record indices the query selects (cached; a filter on marks also keys on the changes)."""
        depends_on_marks = query.filter in MARKS or query.filter == "unreviewed"
        key = (query.filter, query.search, query.sort, self.state.changes if depends_on_marks else None)
        with self._lock:
            if key in self._matches:
                self._matches.move_to_end(key)
                return self._matches[key]
        found = select(self.index, query, self.state.marks)
        with self._lock:
            self._matches[key] = found
            while len(self._matches) > CACHED_QUERIES:
                self._matches.popitem(last=False)
        return found

    def verdicts(self, record: Record) -> list:
        """The verification of the record's samples as written (programs run once per session)."""
        with self._lock:
            if record.index in self._verdicts:
                return self._verdicts[record.index]
        task = self.collection.tasks[record.source]
        training = bool(record.samples) and record.samples[0].origin in TRAINING_ORIGINS
        found = check_cots(task, [s.text for s in record.samples], [record.gold] * len(record.samples), training)
        with self._lock:
            self._verdicts[record.index] = found
        return found

    def remember(self, key, compute):
        """compute() once per key: for what depends only on the data, such as the charts."""
        with self._lock:
            if key in self._remembered:
                return self._remembered[key]
        value = compute()
        with self._lock:
            return self._remembered.setdefault(key, value)
