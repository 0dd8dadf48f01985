"""Turning examples into chat prompts: the instruction, in-context examples, truncation in tokens.

Training and inference build prompts with the same code, so a model is evaluated on exactly the
prompt format it was trained on. In-context examples always come from the training data (see
`ExperimentData.icl_pool`), never from the test split and never the example itself.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.config import PromptingConfig
from sft.tasks.labels import as_text

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.data.prepare import ExperimentData

log = logging.getLogger(__name__)

Message = dict[str, str]
_SYSTEM_PROBE = "<<sft system probe>>"


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the chat template renders a system turn (some templates raise or drop it)."""
    messages = [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "hi"}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja raises TemplateError via raise_exception(); other templates fail otherwise
        return False
    return _SYSTEM_PROBE in rendered


class ICLSampler:
    """Draws in-context examples from a pool of training examples, reproducibly.

    `k` examples are drawn from every group: per label for classification (the task groups them, see
    `sft.tasks`), from one group of all examples for generation. The chosen
    examples are shuffled so the label order carries no signal. The draw for one example depends only
    on the seed, the purpose (train/test) and the example's key, never on batching or order.
    """

    def __init__(self, pool: Dataset | None, groups: list[np.ndarray], seed: int, purpose: str):
        self.pool = pool
        self.groups = groups  # indices of `pool` per label (`k` drawn from each), or one group in all
        self.seed = seed
        self.purpose_id = zlib.crc32(purpose.encode())
        self._warned = False

    @classmethod
    def of(cls, data: ExperimentData, seed: int, purpose: str) -> ICLSampler:
        """The sampler of an experiment's in-context pool, grouped as its task groups examples."""
        return cls(data.icl_pool, data.icl_groups, seed, purpose)

    def sample(self, k: int, key: int, exclude: int | None = None) -> list[dict[str, Any]]:
        """`k` examples (per label for classification); `exclude` is the pool index of the example itself."""
        if k == 0 or self.pool is None:
            return []
        rng = np.random.default_rng([self.seed, self.purpose_id, key])
        chosen = []
        for candidates in self.groups:
            if exclude is not None:
                candidates = candidates[candidates != exclude]
            if len(candidates) < k and not self._warned:
                log.warning(
                    "Only %d in-context candidates where %d were asked; using what there is.", len(candidates), k
                )
                self._warned = True
            chosen.append(rng.choice(candidates, size=min(k, len(candidates)), replace=False))
        picked = np.concatenate(chosen) if chosen else np.array([], dtype=int)
        # a multilabel example may be drawn for two of its labels; show it once
        picked = picked[np.sort(np.unique(picked, return_index=True)[1])]
        order: np.ndarray | list[int] = rng.permutation(picked) if chosen else []
        return [self.pool[int(index)] for index in order]


class FixedExamples:
    """The same in-context examples before every input, whatever the key: an exported model's examples
    (the run's fixed draw), used where an `ICLSampler` would draw."""

    def __init__(self, examples: list[dict[str, Any]]):
        self.examples = list(examples)

    def sample(self, k: int, key: int, exclude: int | None = None) -> list[dict[str, Any]]:
        return list(self.examples) if k else []


class PromptBuilder:
    """Renders examples as chat prompts with one tokenizer's chat template."""

    def __init__(
        self,
        tokenizer: Any,
        prompting: PromptingConfig,
        max_seq_length: int | None = None,
        target: Callable[[Any], str] | None = None,
    ):
        self.tokenizer = tokenizer
        self.config = prompting
        self.max_seq_length = max_seq_length
        # the answer text of an output value: the task's training target (e.g. a joined label list)
        self.target = target or as_text
        self.system_supported = supports_system_role(tokenizer)
        if prompting.instruction and not self.system_supported:
            log.info("The chat template has no system role; the instruction goes into the first user turn.")

    def _truncate(self, text: str, max_tokens: int | None) -> str:
        if max_tokens is None:
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[:max_tokens]).rstrip("\ufffd")

    def user_text(self, example: dict[str, Any], max_tokens: int | None = None) -> str:
        """The user turn: each input column truncated to `max_input_length` tokens (or `max_tokens`)."""
        limit = self.config.max_input_length if max_tokens is None else max_tokens
        texts = {column: self._truncate(as_text(example[column]), limit) for column in self.config.input_columns}
        if self.config.input_template is not None:
            return self.config.input_template.format(**texts)
        if len(texts) == 1:
            return next(iter(texts.values()))
        return "\n".join(f"{column}: {text}" for column, text in texts.items())

    def answer_text(self, example: dict[str, Any]) -> str:
        """The assistant turn: the task's target text of the output column, truncated to
        `max_output_length` tokens."""
        return self._truncate(self.target(example[self.config.output_column]), self.config.max_output_length)

    def messages(
        self, example: dict[str, Any], icl_examples: list[dict[str, Any]], max_tokens: int | None = None
    ) -> list[Message]:
        """System instruction, then one user/assistant exchange per in-context example, then the user turn."""
        turns: list[Message] = []
        for shown in icl_examples:
            turns.append({"role": "user", "content": self.user_text(shown)})
            turns.append({"role": "assistant", "content": self.answer_text(shown)})
        turns.append({"role": "user", "content": self.user_text(example, max_tokens)})
        instruction = self.config.instruction
        if not instruction:
            return turns
        if self.system_supported:
            return [{"role": "system", "content": instruction}, *turns]
        turns[0] = {"role": "user", "content": f"{instruction}\n\n{turns[0]['content']}"}
        return turns

    def render(self, messages: list[Message]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, example: dict[str, Any], icl_examples: list[dict[str, Any]]) -> str:
        """The inference prompt, ending with the generation prompt of the assistant turn.

        Over `max_seq_length`, in-context examples are dropped (last first) and then the input text is
        shortened, so the prompt keeps its chat format instead of being cut in the middle.
        """
        icl = list(icl_examples)
        text = self.render(self.messages(example, icl))
        if self.max_seq_length is None:
            return text
        while self.count_tokens(text) > self.max_seq_length and icl:
            icl.pop()
            text = self.render(self.messages(example, icl))
        length = self.count_tokens(text)
        if length <= self.max_seq_length:
            return text
        input_tokens = sum(self.count_tokens(as_text(example[c])) for c in self.config.input_columns)
        budget = input_tokens - (length - self.max_seq_length)
        while budget > 0:
            per_column = max(1, budget // len(self.config.input_columns))
            text = self.render(self.messages(example, icl, max_tokens=per_column))
            overflow = self.count_tokens(text) - self.max_seq_length
            if overflow <= 0:
                return text
            budget -= overflow
        raise ValueError(
            f"inference.max_seq_length={self.max_seq_length} is too short for the instruction and chat format "
            f"alone ({length - input_tokens} tokens); raise it"
        )

    def training_example(self, example: dict[str, Any], icl_examples: list[dict[str, Any]]) -> dict[str, list[Message]]:
        """A TRL prompt/completion pair, so the loss covers only the answer."""
        return {
            "prompt": self.messages(example, icl_examples),
            "completion": [{"role": "assistant", "content": self.answer_text(example)}],
        }


def inference_prompts(
    builder: PromptBuilder, sampler: ICLSampler | FixedExamples, test: Dataset, icl_examples: int, fixed: bool
) -> list[str]:
    """One prompt per test example; in-context examples drawn per example, or once for all when `fixed`."""
    return [
        builder.prompt(example, sampler.sample(icl_examples, key=0 if fixed else index))
        for index, example in enumerate(test)
    ]


def training_examples(
    builder: PromptBuilder, sampler: ICLSampler, shots: Dataset, icl_examples: int, in_pool: bool = True
) -> list[dict]:
    """Prompt/completion pairs for the shots; each example's in-context examples exclude itself (when the
    examples are the sampler's pool, `in_pool`; validation examples are not)."""
    return [
        builder.training_example(example, sampler.sample(icl_examples, key=index, exclude=index if in_pool else None))
        for index, example in enumerate(shots)
    ]
