// Few-shot grid on TweetEval sentiment: two instruct models, zero-shot and 8/32 shots per label,
// two LoRA initializations, with and without one in-context example per label at inference.
//   python -m sft.cli run-experiments etc/configs/jsonnet/tweet_sentiment.jsonnet --results-path results/tweets
local models = {
  qwen05: 'Qwen/Qwen2.5-0.5B-Instruct',
  smollm135: 'HuggingFaceTB/SmolLM2-135M-Instruct',
};
local inits = { default: true, gaussian: 'gaussian' };

local base(model) = {
  dataset: {
    path: 'cardiffnlp/tweet_eval',
    args: { name: 'sentiment' },
    task_type: 'classification',
    shots: 0,
    max_n_test: 2000,
    validation_split: 'validation',
  },
  model: { name: models[model] },
  prompting: {
    instruction: 'Classify the sentiment of the tweet. Answer with one word: negative, neutral or positive.',
    input_columns: ['text'],
    output_column: 'label',
    max_input_length: 128,
  },
  inference: { icl_examples: 0, batch_size: 16, max_seq_length: 1024 },
};

local few_shot(model, shots, init) = base(model) + {
  dataset+: { shots: shots },
  lora: { r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: 'all-linear', init_lora_weights: inits[init] },
  training: {
    icl_examples: 0,
    trainer_args: { num_train_epochs: 5, learning_rate: 2e-4, per_device_train_batch_size: 8, max_length: 512 },
  },
};

local with_icl(config, icl) = config + { inference+: { icl_examples: icl } };

{
  configs: {
    [std.format('%s_zero-shot_icl%d', [model, icl])]: with_icl(base(model), icl)
    for model in std.objectFields(models)
    for icl in [0, 1]
  } + {
    [std.format('%s_shots%d_%s_icl%d', [model, shots, init, icl])]: with_icl(few_shot(model, shots, init), icl)
    for model in std.objectFields(models)
    for shots in [8, 32]
    for init in std.objectFields(inits)
    for icl in [0, 1]
  },
}
