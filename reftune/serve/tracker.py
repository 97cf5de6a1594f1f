"""Following generation token by token, for the requests that need more than the finished text: a
stream (its text sent as it grows) or log-probs (each token's, with its top alternatives). A Tracker
is the `observe` hook of one sampling call (reftune.generation.rollout.sample); it also ends the call once every
request in it has been abandoned (its client went away), so that no work runs for nobody.

Text is decoded incrementally as vLLM does it: the tokens since a recent offset are decoded with and
without the newest ones, and the difference is the new text, held back while it ends in an unfinished
UTF-8 character. What could still be the start of a stop string is held back too, so that a streamed
client never sees text the finished answer would not hold.
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from reftune.serve.protocol import Delta, GenerationRequest, TokenLogprob


class Abandoned(Exception):
    """Every request of a sampling call was abandoned: the call stops."""


@dataclass(frozen=True)
class RowOwner:
    """Whose a row of a sampling call is."""

    request: GenerationRequest
    future: Future  # cancelled when the client went away
    index: int  # the choice it answers: prompt number x n + sample number
    stream: Callable[[Delta], None] | None  # where its streamed pieces go (None: not streamed)
    prompt_tokens: int  # its prompt's length

    @property
    def tracked(self) -> bool:
        return self.stream is not None or self.request.logprobs is not None


class RowText:
    """One row's generated text as it grows, where it ends, and what of it has been streamed."""

    def __init__(self, owner: RowOwner, decode: Callable[[list[int]], str]):
        self.owner, self.decode = owner, decode
        self.tokens: list[int] = []
        self.entries: list[TokenLogprob] = []
        self.text = ""
        self.prefix_offset = self.read_offset = 0  # tokens[prefix:read] were decoded last time
        self.sent = self.sent_entries = 0  # characters and log-prob entries streamed so far
        self.end: int | None = None  # where the answer's text ends, once it has ended
        self.finish_reason: str | None = None
        self.closed = False  # the last piece has been handed out
        self.hold = max((len(stop) for stop in owner.request.stop), default=1) - 1

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def add(self, token: int, entry: TokenLogprob | None, stopped: bool) -> None:
        """One more token; `stopped`: it is a stop token (the end, not part of the text)."""
        if stopped:
            return self.finish("stop")
        self.tokens.append(token)
        if entry is not None:
            self.entries.append(entry)
        before = len(self.text)
        self._decode_new()
        self._find_stop(before)
        if not self.done and len(self.tokens) >= self.owner.request.max_tokens:
            self.finish("length")

    def _decode_new(self) -> None:
        prefix = self.decode(self.tokens[self.prefix_offset:self.read_offset])
        full = self.decode(self.tokens[self.prefix_offset:])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)

    def _find_stop(self, before: int) -> None:
        """The first stop string in the text cuts it there (only the new text can hold a new one)."""
        found = [at for stop in self.owner.request.stop
                 if (at := self.text.find(stop, max(0, before - len(stop) + 1))) >= 0]
        if found:
            self.finish("stop", min(found))

    def finish(self, reason: str, end: int | None = None) -> None:
        if not self.done:
            self.finish_reason, self.end = reason, len(self.text) if end is None else end

    def final_text(self) -> str:
        return self.text[:self.end]

    def final_entries(self) -> tuple[TokenLogprob, ...] | None:
        """The tokens of the final text: a stop string cuts off those that start at or after it."""
        if self.owner.request.logprobs is None:
            return None
        if self.end == len(self.text):  # no stop string cut it
            return tuple(self.entries)
        return tuple(e for e in self.entries if e.offset < self.end)

    def delta(self) -> Delta | None:
        """What has not been streamed yet and may be: all of it once the row has ended, else all but
        what a stop string could still claim. None when there is nothing to send, or the last piece
        has gone."""
        if self.closed:
            return None
        self.closed = self.done
        end = self.end if self.done else max(self.sent, len(self.text) - self.hold)
        entries = None
        if self.owner.request.logprobs is not None:
            kept = self.final_entries() if self.done else [e for e in self.entries if e.offset < end]
            entries, self.sent_entries = tuple(kept[self.sent_entries:]), len(kept)
        if end <= self.sent and not entries and not self.done:
            return None
        piece, self.sent = self.text[self.sent:end], end
        return Delta(self.owner.index, piece, entries, self.finish_reason)


class Tracker:
    """observe() for one sampling call whose rows belong to `owners` (None for a row nobody follows)."""

    def __init__(self, owners: list[RowOwner], tokenizer, stop_ids: list[int]):
        self.token_text: dict[int, str] = {}
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids)
        self.rows = [RowText(owner, self.decode) if owner.tracked else None for owner in owners]
        self.futures = {id(owner.future): owner.future for owner in owners}.values()

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def __call__(self, rows, tokens, logits) -> None:
        """rows, tokens: (a,); logits: (a, V) (see reftune.generation.rollout.sample)."""
        if all(future.cancelled() for future in self.futures):
            raise Abandoned
        rows, tokens = rows.tolist(), tokens.tolist()
        entries = self.logprob_entries(rows, tokens, logits)
        for row, token in zip(rows, tokens):
            text = self.rows[row]
            if text is None or text.done:
                continue
            text.add(token, entries.get(row), token in self.stop_ids)
            self.send(text)

    def logprob_entries(self, rows: list[int], tokens: list[int], logits) -> dict[int, TokenLogprob]:
        """row -> its token's entry, for the rows that asked for log-probs (one softmax for them all)."""
        wanted = [i for i, row in enumerate(rows) if self.rows[row] is not None
                  and self.rows[row].owner.request.logprobs is not None and not self.rows[row].done]
        if not wanted:
            return {}
        logps = logits[wanted].float().log_softmax(-1)
        chosen = logps.gather(-1, logps.new_tensor([tokens[i] for i in wanted]).long()[:, None]).squeeze(-1).tolist()
        k = max(self.rows[rows[i]].owner.request.logprobs for i in wanted)
        top_values, top_ids = logps.topk(k, dim=-1) if k else (logps[:, :0], logps[:, :0].long())
        top_values, top_ids = top_values.tolist(), top_ids.tolist()
        found = {}
        for j, i in enumerate(wanted):
            text = self.rows[rows[i]]
            alternatives = tuple((self.token(t), v) for t, v in
                                 zip(top_ids[j][:text.owner.request.logprobs], top_values[j]))
            last = text.entries[-1] if text.entries else None
            offset = last.offset + len(last.token) if last else 0  # as vLLM counts: each token decoded alone
            found[rows[i]] = TokenLogprob(self.token(tokens[i]), chosen[j], alternatives, offset)
        return found

    def token(self, token_id: int) -> str:
        if token_id not in self.token_text:
            self.token_text[token_id] = self.tokenizer.decode([token_id])
        return self.token_text[token_id]

    def send(self, text: RowText) -> None:
        if text.owner.stream is None or text.owner.future.cancelled():
            return
        delta = text.delta()
        if delta is not None:
            text.owner.stream(delta)

    def finish(self, finished: list[bool]) -> None:
        """After the call: end any row still open (it reached the call's end), streaming its rest."""
        for text, stopped in zip(self.rows, finished):
            if text is not None and not text.done:
                text.finish("stop" if stopped else "length")
                self.send(text)
