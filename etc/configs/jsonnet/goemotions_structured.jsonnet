// GoEmotions (Ekman grouping) as structured extraction: every comment's answer is one JSON object,
// {"emotions": [...], "sentiment": ...}, decoded under its JSON Schema so that it always parses
// (docs/structured.md). The target is built from the `labels` column: the emotions as they are, and the
// sentiment GoEmotions' authors group them into (joy positive; anger, disgust, fear, sadness negative;
// surprise ambiguous; neutral neutral), "ambiguous" when a comment's emotions disagree.
// Three experiments: zero-shot constrained, zero-shot free (the valid share it loses), and LoRA on 32
// examples per emotion's worth of comments (224 in all), constrained.
// The data is the external variable `data`: a folder of train/validation/test.jsonl with `text` and
// `labels` (a list of Ekman label names), e.g. the copy in ../shared/data:
//   python -m sft.cli run-experiments etc/configs/jsonnet/goemotions_structured.jsonnet \
//     --ext-var data=../shared/data/goemotions/ekman --results-path results/goemotions_structured
local data = std.extVar('data');
local emotions = ['anger', 'disgust', 'fear', 'joy', 'neutral', 'sadness', 'surprise'];
local sentiment = {
  anger: 'negative', disgust: 'negative', fear: 'negative', sadness: 'negative',
  joy: 'positive', surprise: 'ambiguous', neutral: 'neutral',
};

local base = {
  dataset: { path: data, task_type: 'structured', validation_split: 'validation', max_n_test: 500 },
  model: { name: 'Qwen/Qwen2.5-0.5B-Instruct' },
  prompting: {
    instruction: 'Which emotions does the comment express (anger, disgust, fear, joy, neutral, sadness, '
                 + 'surprise), and what is its sentiment (positive, negative, neutral, ambiguous)? Answer '
                 + 'with a JSON object {"emotions": [...], "sentiment": ...}.',
    input_columns: ['text'],
    output_column: 'target',
    max_input_length: 128,
  },
  inference: { batch_size: 32, generation_args: { max_new_tokens: 48 } },
  structured: {
    target_fields: {
      emotions: { column: 'labels' },
      sentiment: { column: 'labels', map: sentiment, mixed: 'ambiguous' },
    },
    json_schema: {
      type: 'object',
      properties: {
        emotions: { type: 'array', items: { enum: emotions }, minItems: 1, uniqueItems: true },
        sentiment: { enum: ['ambiguous', 'negative', 'neutral', 'positive'] },
      },
      required: ['emotions', 'sentiment'],
      additionalProperties: false,
    },
  },
};

{
  configs: {
    zero_shot: base,
    zero_shot_free: base + { structured+: { constrained: false } },
    lora_224: base + {
      dataset+: { shots: 224 },
      lora: { r: 16, lora_alpha: 32, target_modules: 'all-linear' },
      training: {
        trainer_args: { num_train_epochs: 2, learning_rate: 2e-4, per_device_train_batch_size: 8 },
      },
    },
  },
}
