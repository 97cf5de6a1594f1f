"""The OpenAI wire format as plain functions: every malformed request is a BadRequest naming the field."""
import pytest

from reftune.serve.protocol import (BadRequest, Generation, chat_request, completion_request, completion_response,
                                    cut_at_stop, error_body)


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
