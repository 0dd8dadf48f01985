"""Constrained decoding: a grammar (a JSON Schema, a regular expression or a list of choices) enforced
token by token inside `model.generate` through a `transformers.LogitsProcessor`.

The engine is llguidance (`pip install llguidance`): one small wheel with no dependencies, a matcher
per sequence that computes the allowed-token bitmask of the next step in tens of microseconds on CPU,
and compiles JSON Schemas, regular expressions and Lark grammars. benchmarks/structured.py measures its
cost per generated token beside unconstrained decoding; the note in docs/structured.md says why it was
picked over xgrammar (it would pull triton into the CPU install) and outlines-core (an index built over
the whole vocabulary per schema).

Every sequence ends in a string the grammar accepts: the model may only pick allowed tokens, the end of
sequence is allowed only where the grammar is complete, and a sequence that reaches `max_new_tokens`
first is completed by the grammar alone (`complete`: closing quotes and brackets first, then the
shortest allowed token), so even a random-weight model's output parses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

# What a grammar may be built from: the kind and its text (a JSON Schema, a regex, a JSON list of choices).
GRAMMAR_KINDS = ("json_schema", "regex", "choice")
# The most tokens `complete` adds to a sequence cut off by max_new_tokens.
COMPLETION_LIMIT = 2048
# Token texts `complete` prefers, best first: closing a string, an array, an object, then ending a value
# (a number) to go on to the next key.
_CLOSING = ('"', "]", "}", '"}', '"]', "]}", "}}", '"}}', ",", '",')


@dataclass(frozen=True)
class Grammar:
    """A constraint on generated text: `kind` is one of GRAMMAR_KINDS, `text` its source."""

    kind: str
    text: str

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> Grammar:
        """JSON with the canonical separators (",", ":"), no whitespace between tokens and the object's keys
        in sorted order: the one form training targets have (`sft.tasks.structured.canonical`)."""
        ordered = sorted_properties(schema)
        options = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
        return cls("json_schema", json.dumps({**ordered, "x-guidance": options}, sort_keys=False))

    @classmethod
    def regex(cls, pattern: str) -> Grammar:
        return cls("regex", pattern)

    @classmethod
    def choice(cls, choices: list[str]) -> Grammar:
        return cls("choice", json.dumps(choices))


# Keywords the engine cannot enforce; the task enforces them on the parsed output (duplicates dropped).
UNENFORCED = frozenset({"uniqueItems"})


def sorted_properties(schema: Any) -> Any:
    """The schema with every `properties` mapping in key order, so the grammar writes keys sorted, and
    without the keywords of UNENFORCED."""
    if isinstance(schema, list):
        return [sorted_properties(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    found = {key: sorted_properties(value) for key, value in schema.items() if key not in UNENFORCED}
    if isinstance(schema.get("properties"), dict):
        found["properties"] = {
            key: sorted_properties(schema["properties"][key]) for key in sorted(schema["properties"])
        }
    return found


def grammar_problem(grammar: Grammar) -> str | None:
    """Why the engine cannot compile `grammar`, or None."""
    import llguidance

    try:
        compiled = llguidance.grammar_from(grammar.kind, grammar.text)  # type: ignore[arg-type]
    except ValueError as error:
        return str(error)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(compiled)
    return "; ".join(messages) if is_error else None


def _compiled(grammar: Grammar) -> str:
    import llguidance

    return str(llguidance.grammar_from(grammar.kind, grammar.text))  # type: ignore[arg-type]


# One engine tokenizer per HF tokenizer (building one reads the whole vocabulary: ~1 s for a large one).
_TOKENIZERS: dict[int, tuple[Any, Any]] = {}


def engine_tokenizer(tokenizer: Any, stop_ids: list[int]) -> Any:
    """llguidance's view of a HF fast tokenizer, ending a sequence with the first of `stop_ids`."""
    import llguidance.hf

    key = id(tokenizer)
    cached = _TOKENIZERS.get(key)
    if cached is None or cached[0] is not tokenizer:
        cached = (tokenizer, llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=stop_ids[0]))
        _TOKENIZERS[key] = cached
    return cached[1]


@lru_cache(maxsize=64)
def _grammar_text(grammar: Grammar) -> str:
    return _compiled(grammar)


def _bits(words: np.ndarray, width: int) -> torch.Tensor:
    """(rows, ceil(width/32)) int32 bitmask -> (rows, width) bool of the allowed tokens."""
    allowed = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :width]
    return torch.from_numpy(allowed.astype(bool))


def _fill(matcher: Any, bitmask: np.ndarray, row: int) -> None:
    """The allowed-token bitmask of `matcher`'s next step into row `row` (llguidance.torch does the same,
    but importing it imports torch.compile's machinery: seconds per process)."""
    target = bitmask[row]
    matcher.unsafe_compute_mask_ptr(target.ctypes.data, target.nbytes)


class GrammarProcessor(LogitsProcessor):
    """Masks every token the grammar does not allow next, for each sequence of a batch. The matchers
    advance by the token each sequence received in the previous step; a finished sequence (its end token
    consumed, the rest padding) is left unmasked."""

    def __init__(self, grammar: Grammar, tokenizer: Any, stop_ids: list[int], batch_size: int):
        import llguidance

        self.engine = engine_tokenizer(tokenizer, stop_ids)
        text = _grammar_text(grammar)
        self.matchers = [llguidance.LLMatcher(self.engine, text, log_level=0) for _ in range(batch_size)]
        errors = [matcher.get_error() for matcher in self.matchers if matcher.is_error()]
        if errors:
            raise ValueError(f"the grammar does not compile: {errors[0]}")
        self.stop_ids = set(stop_ids)
        self.end = stop_ids[0]  # the token the engine ends a sequence with
        self.done = [False] * batch_size  # the sequence's end token was generated
        self.prompt_length: int | None = None
        self.words = (self.engine.vocab_size + 31) // 32

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        else:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                if token in self.stop_ids:
                    self.done[row] = True
                elif not self.done[row] and not self.matchers[row].is_stopped():
                    self.matchers[row].consume_token(token)
        bitmask = np.full((len(self.matchers), self.words), -1, dtype=np.int32)
        for row, matcher in enumerate(self.matchers):
            if self.done[row]:
                continue  # padding follows the end token: any token will do
            if matcher.is_stopped():  # complete, nothing may follow: only the end token
                bitmask[row] = 0
                bitmask[row, self.end // 32] = np.int32(np.uint32(1 << (self.end % 32)).view(np.int32))
            else:
                _fill(matcher, bitmask, row)
        width = min(scores.shape[1], self.engine.vocab_size)
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        allowed[:, :width] = _bits(bitmask, width)
        allowed[torch.tensor(self.done)] = True
        allowed = allowed.to(scores.device)
        masked = scores.masked_fill(~allowed, float("-inf"))
        # A sampling warper before this processor may have removed every allowed token: fall back to them, equal.
        lost = torch.isinf(masked).all(dim=-1)
        if bool(lost.any()):
            masked[lost] = torch.where(allowed[lost], 0.0, float("-inf")).to(masked.dtype)
        return masked

    def generated(self, row: int, tokens: list[int]) -> list[int]:
        """The tokens of `row` with its grammar completed when generation stopped before the grammar did
        (max_new_tokens reached): the end token and padding dropped, closing tokens appended."""
        matcher = self.matchers[row]
        kept = []
        for token in tokens:
            if token in self.stop_ids:
                break
            kept.append(token)
        if self.done[row] or matcher.is_accepting() or matcher.is_stopped():
            return kept
        # The last token the model chose was never consumed (no further step ran): consume it first.
        if kept and not matcher.is_error():
            consumed = matcher.validate_tokens(kept[-1:]) == 1
            if consumed:
                matcher.consume_token(kept[-1])
            else:
                kept = kept[:-1]
        return kept + complete(matcher, self.engine, self.stop_ids)


def complete(matcher: Any, engine: Any, stop_ids: set[int]) -> list[int]:
    """Tokens that bring `matcher` to an accepting state without a model: forced tokens when the grammar
    forces them, else the allowed token that closes most (a quote, a bracket), else the shortest."""
    added: list[int] = []
    bitmask = np.full((1, (engine.vocab_size + 31) // 32), -1, dtype=np.int32)
    while not matcher.is_accepting() and not matcher.is_error() and len(added) < COMPLETION_LIMIT:
        forced = matcher.compute_ff_tokens()
        if forced:
            matcher.consume_tokens(forced)
            added += forced
            continue
        _fill(matcher, bitmask, 0)
        candidates = [int(i) for i in np.flatnonzero(_bits(bitmask, engine.vocab_size)[0].numpy())]
        candidates = [token for token in candidates if token not in stop_ids]
        if not candidates:
            break
        ranks = _closing_ranks(engine)
        token = min(candidates, key=ranks.__getitem__)
        matcher.consume_token(token)
        added.append(token)
    return added


_RANKS: dict[int, tuple[Any, list[tuple[int, int]]]] = {}


def _closing_ranks(engine: Any) -> list[tuple[int, int]]:
    """`_closing_rank` of every token of `engine`, computed once per engine tokenizer."""
    cached = _RANKS.get(id(engine))
    if cached is None or cached[0] is not engine:
        cached = (engine, [_closing_rank(engine.decode_bytes([token])) for token in range(engine.vocab_size)])
        _RANKS[id(engine)] = cached
    return cached[1]


def _closing_rank(text: bytes) -> tuple[int, int]:
    decoded = text.decode("utf-8", errors="replace")
    if decoded in _CLOSING:
        return (_CLOSING.index(decoded), 0)
    if decoded.isdigit():
        return (len(_CLOSING), len(decoded))
    return (len(_CLOSING) + 1, len(text))
