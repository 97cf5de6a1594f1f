"""The OpenAI wire format as plain functions: every malformed request is a BadRequest naming the field."""
import pytest

from reftune.serve.protocol import (BadRequest, Generation, chat_request, completion_request, completion_response,
                                    cut_at_stop, error_body, parse_body)


@pytest.mark.parametrize("body, words", [
    ([1, 2], "JSON object"),
    ({}, "'prompt'"),
    ({"prompt": ["a", 3]}, "'prompt'"),
    ({"prompt": "a", "max_tokens": 0}, "'max_tokens' must be between 1 and 64"),
    ({"prompt": "a", "max_tokens": 2.5}, "'max_tokens' must be an integer"),
    ({"prompt": "a", "temperature": "hot"}, "'temperature' must be a number"),
    ({"prompt": "a", "n": True}, "'n' must be an integer"),
    ({"prompt": "a", "stop": [1]}, "'stop'"),
    ({"prompt": "a", "stream": True}, "'stream' is not supported"),
])
def test_malformed_completion_requests_are_refused_with_the_field_named(body, words):
    with pytest.raises(BadRequest, match=words) as refused:
        completion_request(body, "m", 64)
    assert refused.value.status == 400


def test_an_unknown_model_is_a_404():
    with pytest.raises(BadRequest, match="model 'gpt-9' not found") as refused:
        completion_request({"prompt": "a", "model": "gpt-9"}, "m", 64)
    assert refused.value.status == 404


@pytest.mark.parametrize("messages", [None, [], [{"role": "robot", "content": "x"}], [{"role": "user", "content": 1}]])
def test_chat_requests_need_well_formed_messages(messages):
    with pytest.raises(BadRequest, match="'messages'"):
        chat_request({"messages": messages}, "m", 64)


def test_a_chat_request_keeps_role_and_content_only():
    request = chat_request({"messages": [{"role": "user", "content": "hi", "name": "x"}], "n": 2}, "m", 64)
    assert request.prompts == [[{"role": "user", "content": "hi"}]] and request.chat and request.n == 2


def test_stop_strings_cut_the_text_at_the_first():
    assert cut_at_stop("a\nQuestion: b", ("\nQuestion:", "b")) == ("a", True)
    assert cut_at_stop("abc", ()) == ("abc", False)


def test_responses_count_each_prompt_once_and_carry_the_finish_reason():
    generations = [Generation("x", 5, 2, "stop"), Generation("y", 5, 3, "length")]
    body = completion_response("m", generations, chat=False, n=2)
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "length"]
    chat = completion_response("m", generations[:1], chat=True, n=1)
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "x"}
    assert error_body("bad", 400)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw, words", [
    (b'{"prompt": "x", "max_tokens": Infinity}', "Infinity is not a JSON number"),
    (b'{"prompt": "x", "n": NaN}', "NaN is not a JSON number"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"prompt": "\xff"}', "not UTF-8"),
    (b'{"prompt": ', "not valid JSON"),
])
def test_bodies_that_are_not_strict_json_are_bad_requests(raw, words):
    with pytest.raises(BadRequest, match=words):
        parse_body(raw)


@pytest.mark.parametrize("body, words", [
    ({"prompt": "a", "max_tokens": float("inf")}, "'max_tokens' must be an integer, got inf"),
    ({"prompt": "a", "n": float("nan")}, "'n' must be an integer, got nan"),
    ({"prompt": "a", "temperature": float("nan")}, "'temperature' must be a number, got nan"),
    ({"prompt": "a\ud800"}, "'prompt' holds '\\\\ud800', a lone surrogate"),
    ({"prompt": "a", "stop": "\udfff"}, "'stop' holds"),
])
def test_non_finite_numbers_and_lone_surrogates_are_refused(body, words):
    with pytest.raises(BadRequest, match=words):
        completion_request(body, "m", 64)
    with pytest.raises(BadRequest, match="'messages' holds"):
        chat_request({"messages": [{"role": "user", "content": "\ud800"}]}, "m", 64)


def test_a_request_for_more_rows_than_the_cap_names_the_cap_and_the_option():
    with pytest.raises(BadRequest, match="asks for 6400 completions \\(100 prompts x n=64\\).* at most 64 per "
                                         "request.*--max-request-rows"):
        completion_request({"prompt": ["x"] * 100, "n": 64}, "m", 64)
    assert completion_request({"prompt": ["x"] * 10, "n": 10}, "m", 64, max_rows=100).n == 10
    with pytest.raises(BadRequest, match="'n' must be between 1 and 8"):
        completion_request({"prompt": "x", "n": 9}, "m", 64, max_rows=8)


def test_a_vanishing_temperature_is_greedy_rather_than_an_overflow():
    assert completion_request({"prompt": "a", "temperature": 1e-300}, "m", 64).temperature == 0.0
    assert completion_request({"prompt": "a", "temperature": 0.5}, "m", 64).temperature == 0.5
