"""Filters, search, sorts and paging over the precomputed index."""
import pytest

from reftune.errors import ReftuneError
from reftune.review.journal import Event
from reftune.review.query import Query, build_index, neighbours, page_of, select
from reftune.review.records import Record, Sample, load_collection
from reftune.review.state import ReviewState
from review_inputs import python_samples  # noqa: F401 (fixtures)


def record(index: int, statuses: list[str], text: str = "x", question: str = "q") -> Record:
    samples = tuple(Sample(text * (n + 1), status=status) for n, status in enumerate(statuses))
    return Record(index, 0, f"r{index}", question, 1.0, samples)


def test_each_outcome_filter_selects_its_records(python_samples):
    collection = load_collection([python_samples])
    index = build_index(collection.records)
    def ids(name):
        return [collection.records[i].id for i in select(index, Query(filter=name), lambda i: set())]
    assert ids("wrong") == ["svamp_1"] and ids("correct") == ["svamp_2"]
    assert ids("program_error") == ["svamp_3", "svamp_4"] and len(ids("error")) == 1 and len(ids("all")) == 5


def test_review_filters_follow_the_state(python_samples):
    collection = load_collection([python_samples])
    state, index = ReviewState(collection), build_index(collection.records)
    state.act(collection.records[1], 1, Event("flag", "svamp_2", 1))
    state.act(collection.records[0], 0, Event("accept", "svamp_1", 0))
    assert select(index, Query(filter="flagged"), state.marks) == [1]
    assert select(index, Query(filter="accepted"), state.marks) == [0]
    assert 0 not in select(index, Query(filter="unreviewed"), state.marks)


def test_search_is_case_insensitive_over_ids_questions_and_samples(python_samples):
    collection = load_collection([python_samples])
    index = build_index(collection.records)
    assert select(index, Query(search="APPLES_NOBODY"), lambda i: set()) == [3]
    assert select(index, Query(search="svamp_2"), lambda i: set()) == [1]
    assert select(index, Query(search="how many pens"), lambda i: set()) == [1]


def test_sorts_by_length_and_by_how_often_solved():
    records = [record(0, ["correct", "wrong_answer"], "aaaa"), record(1, ["wrong_answer"], "a"),
               record(2, ["correct"], "aaaaaaaaaa")]
    index = build_index(records)
    none = lambda i: set()  # noqa: E731
    assert select(index, Query(sort="length"), none) == [1, 0, 2]
    assert select(index, Query(sort="-length"), none) == [2, 0, 1]
    assert select(index, Query(sort="solved"), none) == [1, 0, 2]
    assert select(index, Query(sort="-solved"), none) == [2, 0, 1]


def test_paging_clamps_to_the_last_page_and_neighbours_follow_the_list():
    assert page_of(list(range(120)), 9, 50).number == 3 and page_of([], 1).pages == 1
    assert neighbours([4, 7, 9], 7) == (4, 9) and neighbours([4, 7, 9], 4) == (None, 7)
    assert neighbours([4, 7, 9], 5) == (None, 4)


@pytest.mark.parametrize("params, message", [({"filter": "nope"}, "unknown filter"), ({"sort": "x"}, "unknown sort"),
                                              ({"page": "two"}, "whole number")])
def test_a_bad_query_parameter_is_one_clear_error(params, message):
    with pytest.raises(ReftuneError, match=message):
        Query.from_params(params)


def test_url_params_leave_out_the_defaults():
    assert Query(filter="wrong", page=3).url_params(page=1) == "filter=wrong"
