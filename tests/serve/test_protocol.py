"""The OpenAI wire format as plain functions: every malformed request is a BadRequest naming the field."""
import pytest

from reftune.serve.protocol import (BadRequest, Delta, Generation, Stream, TokenLogprob, chat_request,
                                    completion_request, completion_response, cut_at_stop, error_body, parse_body,
                                    server_sent_event)


@pytest.mark.parametrize("body, words", [
    ([1, 2], "JSON object"),
    ({}, "'prompt'"),
    ({"prompt": ["a", 3]}, "'prompt'"),
    ({"prompt": "a", "max_tokens": 0}, "'max_tokens' must be between 1 and 64"),
    ({"prompt": "a", "max_tokens": 2.5}, "'max_tokens' must be an integer"),
    ({"prompt": "a", "temperature": "hot"}, "'temperature' must be a number"),
    ({"prompt": "a", "n": True}, "'n' must be an integer"),
    ({"prompt": "a", "stop": [1]}, "'stop'"),
    ({"prompt": "a", "stream": "yes"}, "'stream' must be true or false"),
    ({"prompt": "a", "stream_options": {"include_usage": True}}, "'stream_options' needs 'stream': true"),
    ({"prompt": "a", "stream": True, "stream_options": []}, "'stream_options' must be an object"),
    ({"prompt": "a", "logprobs": True}, "'logprobs' must be an integer"),
    ({"prompt": "a", "logprobs": 21}, "'logprobs' must be between 0 and 20"),
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


@pytest.mark.parametrize("key, value", [("echo", True), ("best_of", 3), ("suffix", "x"), ("logit_bias", {"50": 5}),
                                        ("presence_penalty", 0.5), ("frequency_penalty", -1), ("tools", [{}]),
                                        ("response_format", {"type": "json_object"}), ("audio", {"voice": "x"})])
def test_what_the_server_does_not_implement_is_refused_not_dropped(key, value):
    with pytest.raises(BadRequest, match=f"'{key}' is not supported by reftune serve: leave it out"):
        completion_request({"prompt": "a", key: value}, "m", 64)


def test_parameters_set_to_what_asks_for_nothing_are_accepted():
    neutral = {"echo": False, "best_of": 1, "suffix": None, "logit_bias": {}, "presence_penalty": 0,
               "frequency_penalty": 0.0, "tools": [], "tool_choice": "none", "response_format": {"type": "text"},
               "user": "me", "seed": 7, "temperature": 0}
    assert completion_request({"prompt": "a", **neutral}, "m", 64).temperature == 0.0


def test_a_seed_is_refused_when_sampling_since_batched_requests_share_one_generator():
    with pytest.raises(BadRequest, match="'seed' is not supported when sampling.*reftune serve --seed"):
        completion_request({"prompt": "a", "seed": 1, "temperature": 0.7}, "m", 64)


def test_log_probs_are_asked_for_as_each_route_spells_it():
    assert completion_request({"prompt": "a"}, "m", 64).logprobs is None
    assert completion_request({"prompt": "a", "logprobs": 0}, "m", 64).logprobs == 0
    assert completion_request({"prompt": "a", "logprobs": 5}, "m", 64).logprobs == 5
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    assert chat_request({**chat, "logprobs": True}, "m", 64).logprobs == 0
    assert chat_request({**chat, "logprobs": True, "top_logprobs": 3}, "m", 64).logprobs == 3
    assert chat_request({**chat, "logprobs": False}, "m", 64).logprobs is None
    with pytest.raises(BadRequest, match="'top_logprobs' needs 'logprobs': true"):
        chat_request({**chat, "top_logprobs": 2}, "m", 64)
    with pytest.raises(BadRequest, match="'logprobs' must be true or false in a chat request"):
        chat_request({**chat, "logprobs": 3}, "m", 64)


def test_streaming_and_its_usage_chunk_are_asked_for_with_stream_options():
    request = completion_request({"prompt": "a", "stream": True, "stream_options": {"include_usage": True}}, "m", 64)
    assert request.stream and request.include_usage
    assert not completion_request({"prompt": "a", "stream": False}, "m", 64).stream


ENTRY = TokenLogprob("é", -0.25, (("é", -0.25), ("e", -1.5)), 3)


def test_log_probs_take_openais_two_layouts():
    body = completion_response("m", [Generation("abcé", 2, 4, "stop", (ENTRY,))], chat=False, n=1)
    assert body["choices"][0]["logprobs"] == {"tokens": ["é"], "token_logprobs": [-0.25],
                                              "top_logprobs": [{"é": -0.25, "e": -1.5}], "text_offset": [3]}
    chat = completion_response("m", [Generation("abcé", 2, 4, "stop", (ENTRY,))], chat=True, n=1)
    [token] = chat["choices"][0]["logprobs"]["content"]
    assert token["token"] == "é" and token["bytes"] == [195, 169] and token["logprob"] == -0.25
    assert [t["token"] for t in token["top_logprobs"]] == ["é", "e"]
    assert completion_response("m", [Generation("x", 1, 1, "stop")], chat=True, n=1)["choices"][0]["logprobs"] is None


def test_stream_chunks_take_openais_shapes():
    chat = Stream.start("m", chat=True)
    first = chat.delta_chunk(Delta(1, "Hi"), first=True)
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("chatcmpl-")
    assert first["choices"] == [{"index": 1, "delta": {"role": "assistant", "content": "Hi"}, "logprobs": None,
                                 "finish_reason": None}]
    last = chat.delta_chunk(Delta(1, "", None, "length"), first=False)
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "length"
    assert last["id"] == first["id"]  # one id for the whole stream
    text = Stream.start("m", chat=False).delta_chunk(Delta(0, "4", (ENTRY,), "stop"), first=True)
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "4"
    assert text["choices"][0]["logprobs"]["tokens"] == ["é"]
    usage = chat.usage_chunk([Generation("a", 5, 2, "stop"), Generation("b", 5, 3, "stop")], n=2)
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert server_sent_event("[DONE]") == b"data: [DONE]\n\n"
    assert server_sent_event({"a": "é"}) == 'data: {"a": "é"}\n\n'.encode()


def test_queued_pieces_merge_per_choice_keeping_their_log_probs_in_order():
    from reftune.serve.protocol import merge_deltas

    first, second = TokenLogprob("a", -1.0, (), 0), TokenLogprob("b", -2.0, (), 1)
    merged = merge_deltas([Delta(2, "a", (first,)), Delta(0, "z"), Delta(2, "b", (second,), "length")])
    assert [(d.index, d.text, d.finish_reason) for d in merged] == [(2, "ab", "length"), (0, "z", None)]
    assert merged[0].logprobs == (first, second)
