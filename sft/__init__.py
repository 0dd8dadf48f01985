"""sft: few-shot LoRA fine-tuning and evaluation of decoder-only LLMs, driven by JSON/JSONNET configs."""

__version__ = "0.1.0"
