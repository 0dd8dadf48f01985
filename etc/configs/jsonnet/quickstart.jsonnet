// Quickstart: runs offline on a CPU in a few minutes.
// Build its tiny model and synthetic sentiment data first:  python -m sft.synthetic build/quickstart
// Then:  python -m sft.cli run-experiments etc/configs/jsonnet/quickstart.jsonnet --results-path results/quickstart
local root = 'build/quickstart';

local base = {
  dataset: { path: root + '/data', task_type: 'classification', shots: 0, validation_split: 'validation' },
  model: { name: root + '/model' },
  prompting: {
    instruction: 'Classify the sentiment of the product review as negative, neutral or positive.',
    input_columns: ['text'],
    output_column: 'label',
    max_input_length: 64,
  },
  inference: { batch_size: 16, icl_examples: 0 },
};

// Few-shot: 32 training examples per label and a LoRA adapter, trained for a few epochs.
local few_shot(init) = base + {
  dataset+: { shots: 32 },
  lora: { r: 8, lora_alpha: 16, target_modules: 'all-linear', init_lora_weights: init },
  training: {
    icl_examples: 0,
    trainer_args: {
      num_train_epochs: 15,
      learning_rate: 3e-3,
      per_device_train_batch_size: 8,
      lr_scheduler_type: 'constant',
      logging_steps: 10,
    },
  },
};

{
  configs: {
    'zero-shot': base,
    'zero-shot-icl1': base + { inference+: { icl_examples: 1 } },
    'few-shot-lora-default': few_shot(true),
    'few-shot-lora-gaussian': few_shot('gaussian'),
  },
}
