"""Following rows token by token, without a model: streamed pieces add up to the final text, a stop
string is never streamed, log-probs cover the final text's tokens, and abandoned requests stop the call."""
from concurrent.futures import Future

import pytest
import torch

from reftune.serve.protocol import GenerationRequest, TokenLogprob
from reftune.serve.tracker import Abandoned, RowOwner, RowText, Tracker

EOS = 0


class BytesTokenizer:
    """Token i is the i-th piece of bytes (a byte-level BPE's tokens can split a character)."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = [b"<eos>", *pieces]

    def ids(self, *pieces: bytes) -> list[int]:
        return [self.pieces.index(piece) for piece in pieces]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        kept = [i for i in ids if not (skip_special_tokens and i == EOS)]
        return b"".join(self.pieces[i] for i in kept).decode("utf-8", errors="replace")


TOKENIZER = BytesTokenizer([b"2 ", b"+ ", b"3", b" = 5", b"\nQu", b"estion", b"\xc3", b"\xa9", b"!"])


def owner(stop=(), max_tokens=50, logprobs=None, sink=None, index=0, future=None) -> RowOwner:
    request = GenerationRequest(["p"], max_tokens, 1.0, 1.0, 1, tuple(stop), False, logprobs=logprobs,
                                stream=sink is not None)
    return RowOwner(request, future or Future(), index, sink, 3)


def follow(pieces: list[bytes], **options) -> tuple[RowText, list]:
    sent = []
    decode = lambda ids: TOKENIZER.decode(ids, skip_special_tokens=True)  # noqa: E731
    row = RowText(owner(sink=lambda delta: None, **options), decode)
    for token in TOKENIZER.ids(*pieces):
        row.add(token, None, token == EOS)
        if delta := row.delta():
            sent.append(delta)
        if row.done:
            break
    return row, sent


def test_streamed_pieces_add_up_to_the_text_and_the_last_says_why_it_ended():
    row, sent = follow([b"2 ", b"+ ", b"3", b" = 5", b"<eos>"])
    assert "".join(d.text for d in sent) == row.final_text() == "2 + 3 = 5"
    assert [d.finish_reason for d in sent] == [None] * (len(sent) - 1) + ["stop"]


def test_a_stop_string_split_across_tokens_is_held_back_and_cut():
    row, sent = follow([b"2 ", b"+ ", b"3", b" = 5", b"\nQu", b"estion", b"3"], stop=["\nQuestion"])
    assert row.final_text() == "2 + 3 = 5" and row.finish_reason == "stop"
    assert "".join(d.text for d in sent) == "2 + 3 = 5" and "Qu" not in "".join(d.text for d in sent)


def test_half_a_character_waits_for_its_other_half():
    row, sent = follow([b"3", b"\xc3", b"\xa9", b"!"], max_tokens=4)
    assert [d.text for d in sent] == ["3", "é", "!"] and row.finish_reason == "length"


def test_log_prob_entries_cover_the_tokens_of_the_final_text_only():
    rows = RowText(owner(stop=["\nQu"], logprobs=2), lambda ids: TOKENIZER.decode(ids, skip_special_tokens=True))
    for offset, piece in zip((0, 2, 4, 5, 9), (b"2 ", b"+ ", b"3", b" = 5", b"\nQu")):
        [token] = TOKENIZER.ids(piece)
        rows.add(token, TokenLogprob(piece.decode(), -0.5, (), offset), False)
    assert rows.final_text() == "2 + 3 = 5" and [e.token for e in rows.final_entries()] == ["2 ", "+ ", "3", " = 5"]


def test_the_tracker_reads_log_probs_off_the_logits_and_streams_each_row():
    sent = []
    owners = [owner(logprobs=2, sink=sent.append, index=0), owner(index=1)]
    tracker = Tracker(owners, TOKENIZER, [EOS])
    vocab = len(TOKENIZER.pieces)
    logits = torch.full((2, vocab), -10.0)
    logits[:, 3], logits[:, 1] = 2.0, 1.0  # "3" most likely, then "2 "
    tracker(torch.tensor([0, 1]), torch.tensor([1, 3]), logits)
    [entry] = tracker.rows[0].entries
    assert entry.token == "2 " and entry.top[0][0] == "3" and len(entry.top) == 2
    assert entry.logprob == pytest.approx(float(logits[0].log_softmax(-1)[1]))
    assert tracker.rows[1] is None  # neither streamed nor asked for log-probs: not followed
    tracker.finish([False, False])
    assert "".join(d.text for d in sent) == "2 " and sent[-1].finish_reason == "length"


def test_a_call_whose_requests_were_all_abandoned_stops():
    first, second = Future(), Future()
    tracker = Tracker([owner(sink=lambda d: None, future=first), owner(future=second)], TOKENIZER, [EOS])
    logits = torch.zeros(2, len(TOKENIZER.pieces))
    first.cancel()
    tracker(torch.tensor([0, 1]), torch.tensor([1, 1]), logits)  # one request still wants its rows
    second.cancel()
    with pytest.raises(Abandoned):
        tracker(torch.tensor([0, 1]), torch.tensor([1, 1]), logits)
