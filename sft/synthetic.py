"""Offline assets built in code: tiny random-weight Llama / Qwen2 models with a trained byte-level BPE
tokenizer and a chat template, and small synthetic labelled datasets.

They stand in for hub models where nothing may be downloaded: the quickstart grid and the tests save
them to a folder and load them through the same `from_pretrained` path a hub id takes.

    python -m sft.synthetic build/quickstart     # writes build/quickstart/{model,data}
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any, Literal

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

TemplateStyle = Literal["chatml", "llama3", "chatml_no_system"]
Architecture = Literal["llama", "qwen2"]

# Chat templates in the two families most instruct models follow, written for these tiny tokenizers.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
CHATML_NO_SYSTEM_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
STYLES: dict[str, dict[str, Any]] = {
    "chatml": {
        "template": CHATML_TEMPLATE,
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "tokens": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    },
    "chatml_no_system": {
        "template": CHATML_NO_SYSTEM_TEMPLATE,
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "tokens": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    },
    "llama3": {
        "template": LLAMA3_TEMPLATE,
        "special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "tokens": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|end_of_text|>"},
    },
}

SENTIMENT_WORDS = {
    "negative": ["awful", "terrible", "broken", "disappointing", "useless", "horrible", "faulty", "dreadful"],
    "neutral": ["average", "ordinary", "standard", "typical", "acceptable", "normal", "plain", "regular"],
    "positive": ["excellent", "wonderful", "fantastic", "brilliant", "superb", "lovely", "amazing", "perfect"],
}
NOUNS = ["phone", "battery", "screen", "charger", "camera", "laptop", "keyboard", "speaker", "headset", "watch",
         "delivery", "packaging", "service", "manual", "cable", "printer"]  # fmt: skip
SENTENCES = [
    "the {noun} was {word}.",
    "honestly, my new {noun} is {word}",
    "i think this {noun} is {word} overall",
    "{word} {noun}, would say the same again",
    "after a week the {noun} still feels {word}.",
    "the {noun} arrived today and it looks {word}",
]
# A word-for-word "translation" pair language for generation tests.
LEXICON = {"the": "der", "dog": "hund", "cat": "katze", "sees": "sieht", "eats": "isst", "big": "grosse",
           "small": "kleine", "red": "rote", "house": "haus", "apple": "apfel", "bird": "vogel"}  # fmt: skip
INSTRUCTION_WORDS = (
    "Classify the sentiment of the product review as negative, neutral or positive. Translate English to German."
)


def sentiment_examples(count: int, seed: int) -> list[dict[str, str]]:
    """Short product reviews whose label follows from one sentiment word, balanced across labels."""
    rng = random.Random(seed)
    labels = sorted(SENTIMENT_WORDS)
    examples = []
    for index in range(count):
        label = labels[index % len(labels)]
        sentence = rng.choice(SENTENCES).format(noun=rng.choice(NOUNS), word=rng.choice(SENTIMENT_WORDS[label]))
        examples.append({"text": sentence, "label": label})
    rng.shuffle(examples)
    return examples


def translation_examples(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    words = [w for w in LEXICON if w != "the"]
    examples = []
    for _ in range(count):
        english = " ".join(["the", *rng.sample(words, k=rng.randint(2, 4))])
        examples.append({"en": english, "de": " ".join(LEXICON[w] for w in english.split())})
    return examples


# Aspects an extraction review mentions, and the words that mention them.
ASPECTS = {"delivery": "arrived", "design": "looks", "price": "costs", "quality": "feels"}
# The rating an extraction review gives, by sentiment.
RATINGS = {"negative": [1, 2], "neutral": [3], "positive": [4, 5]}


def extraction_examples(count: int, seed: int) -> list[dict[str, Any]]:
    """Short product reviews and what to extract from them as a JSON object: the product (a category),
    the sentiment (a category), the aspects mentioned (a set), the star rating (a number) and a summary
    (free text), each readable from the text."""
    rng = random.Random(seed)
    labels = sorted(SENTIMENT_WORDS)
    examples = []
    for index in range(count):
        label = labels[index % len(labels)]
        noun, word = rng.choice(NOUNS), rng.choice(SENTIMENT_WORDS[label])
        aspects = sorted(rng.sample(sorted(ASPECTS), k=rng.randint(0, 2)))
        rating = rng.choice(RATINGS[label])
        clauses = [f"it {ASPECTS[aspect]} {word}" for aspect in aspects]
        text = ", ".join([f"the {noun} is {word}", *clauses]) + f". {rating} stars"
        target = {
            "aspects": aspects,
            "product": noun,
            "rating": rating,
            "sentiment": label,
            "summary": f"{word} {noun}",
        }
        examples.append({"text": text, "target": target})
    rng.shuffle(examples)
    return examples


def _corpus() -> list[str]:
    texts = [example["text"] for example in sentiment_examples(600, seed=1)]
    for example in translation_examples(200, seed=1):
        texts += [example["en"], example["de"]]
    texts += [INSTRUCTION_WORDS, "system user assistant", *SENTIMENT_WORDS, "text: premise: hypothesis:"]
    return texts


def build_tokenizer(style: TemplateStyle = "chatml", vocab_size: int = 700) -> Any:
    """A byte-level BPE tokenizer (any text encodes) trained on the synthetic corpus, with a chat template."""
    from transformers import PreTrainedTokenizerFast

    spec = STYLES[style]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=spec["special"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(), trainer)
    tokens = {key: value for key, value in spec["tokens"].items() if value is not None}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **tokens)
    tokenizer.chat_template = spec["template"]
    return tokenizer


def build_model(tokenizer: Any, architecture: Architecture = "llama", seed: int = 0, hidden_size: int = 64,
                layers: int = 2, initializer_range: float = 0.02,
                intermediate_size: int | None = None) -> Any:  # fmt: skip
    """A random-weight causal LM of the given architecture sized to the tokenizer.

    With the usual initializer range (0.02) a tiny random model's logits are nearly flat and a LoRA
    adapter barely moves them; the quickstart uses a wider range so few-shot training visibly learns.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or hidden_size * 3,  # the MLP width
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "initializer_range": initializer_range,
    }
    config = LlamaConfig(**common) if architecture == "llama" else Qwen2Config(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tiny_model(folder: str | Path, architecture: Architecture = "llama", style: TemplateStyle = "chatml",
                    seed: int = 0, **model_args: Any) -> Path:  # fmt: skip
    """Build and save a tiny model with its tokenizer; `from_pretrained(folder)` loads both."""
    folder = Path(folder)
    tokenizer = build_tokenizer(style)
    model = build_model(tokenizer, architecture, seed, **model_args)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_splits(folder: str | Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    """One JSON Lines file per split, which `datasets.load_dataset(folder)` reads as named splits."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    return folder


def build_quickstart(folder: str | Path) -> Path:
    """The quickstart's model (a tiny Qwen2) and sentiment dataset under `folder`."""
    folder = Path(folder)
    save_tiny_model(
        folder / "model", architecture="qwen2", style="chatml", seed=0, hidden_size=128, initializer_range=0.1
    )
    write_splits(
        folder / "data",
        {
            "train": sentiment_examples(300, seed=11),
            "validation": sentiment_examples(60, seed=12),
            "test": sentiment_examples(150, seed=13),
        },
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the offline quickstart model and dataset.")
    parser.add_argument("folder", nargs="?", default="build/quickstart")
    folder = build_quickstart(parser.parse_args().folder)
    print(f"Quickstart model and data written to {folder}")


if __name__ == "__main__":
    main()
