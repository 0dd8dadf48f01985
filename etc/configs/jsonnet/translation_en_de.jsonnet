// English -> German translation on Multi30k (generation, scored by BLEU, chrF and ROUGE): zero-shot and
// 64/256 training pairs, each with 0 or 2 in-context examples at inference.
local base = {
  dataset: { path: 'bentrevett/multi30k', task_type: 'generation', shots: 0, max_n_test: 500 },
  model: { name: 'Qwen/Qwen2.5-0.5B-Instruct' },
  prompting: {
    instruction: 'Translate the English sentence into German. Reply with the translation only.',
    input_columns: ['en'],
    output_column: 'de',
    max_input_length: 96,
    max_output_length: 128,
  },
  inference: { icl_examples: 0, batch_size: 16, generation_args: { max_new_tokens: 96, do_sample: false } },
};

local trained(shots) = base + {
  dataset+: { shots: shots },
  lora: { r: 16, lora_alpha: 32, target_modules: 'all-linear' },
  training: {
    icl_examples: 0,
    trainer_args: { num_train_epochs: 3, learning_rate: 2e-4, per_device_train_batch_size: 8, max_length: 512 },
  },
};

[
  base,
  base + { inference+: { icl_examples: 2 } },
] + [
  trained(shots) + { inference+: { icl_examples: icl } }
  for shots in [64, 256]
  for icl in [0, 2]
]
