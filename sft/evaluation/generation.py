"""Generation metrics, computed locally with sacrebleu and rouge-score (nothing downloaded)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import sacrebleu

from sft.config import EvaluationConfig
from sft.evaluation.metrics import MetricInputs


class _WordTokenizer:
    """Splits text into lowercased words; unlike rouge-score's default it keeps non-ASCII letters, so
    German, Arabic or Chinese text is not erased before scoring."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())


class _HFTokenizer:
    """Words as a HF tokenizer splits them (evaluation.tokenizer_name), for languages whose words the
    default splitters get wrong."""

    def __init__(self, name: str):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text)


def _word_tokenizer(config: EvaluationConfig) -> Any:
    return _HFTokenizer(config.tokenizer_name) if config.tokenizer_name else _WordTokenizer()


def bleu(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    predictions, references, tokenize = inputs.predictions, inputs.references, config.bleu_tokenize
    if config.tokenizer_name:
        splitter = _HFTokenizer(config.tokenizer_name)
        predictions = [" ".join(splitter.tokenize(text)) for text in predictions]
        references = [" ".join(splitter.tokenize(text)) for text in references]
        tokenize = "none"
    return {"bleu": float(sacrebleu.corpus_bleu(predictions, [references], tokenize=tokenize).score)}


def chrf(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    return {"chrf": float(sacrebleu.corpus_chrf(inputs.predictions, [inputs.references]).score)}


def rouge(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Mean ROUGE-1/2/L F-measures."""
    from rouge_score import rouge_scorer

    kinds = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(kinds, tokenizer=_word_tokenizer(config))
    totals = dict.fromkeys(kinds, 0.0)
    for reference, prediction in zip(inputs.references, inputs.predictions):
        scores = scorer.score(reference, prediction)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    count = max(len(inputs.references), 1)
    return {kind: total / count for kind, total in totals.items()}


def exact_match(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Share of predictions equal to their reference after collapsing whitespace."""

    def norm(text: str) -> str:
        return " ".join(text.split())

    matches = [norm(p) == norm(r) for p, r in zip(inputs.predictions, inputs.references)]
    return {"exact_match": float(np.mean(matches)) if matches else 0.0}
