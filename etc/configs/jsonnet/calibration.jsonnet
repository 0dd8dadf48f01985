// Calibration grid on TweetEval emotion (4 labels): zero-shot with one in-context example per label,
// and 8 shots per label with four LoRA initializations (PEFT's default, sft's pca and simplified
// pissa, PEFT's gaussian), each crossed with every calibration.
//   python -m sft.cli run-experiments etc/configs/jsonnet/calibration.jsonnet --results-path results/calibration
local inits = { default: true, pca: 'pca', pissa: 'pissa', gaussian: 'gaussian' };
local calibrations = ['none', 'contextual', 'domain', 'batch', 'adjustable_batch'];

local base(calibration) = {
  dataset: {
    path: 'cardiffnlp/tweet_eval',
    args: { name: 'emotion' },
    task_type: 'classification',
    shots: 0,
    max_n_test: 1000,
  },
  model: { name: 'Qwen/Qwen2.5-0.5B-Instruct' },
  prompting: {
    instruction: 'Classify the emotion of the tweet. Answer with one word: anger, joy, optimism or sadness.',
    input_columns: ['text'],
    output_column: 'label',
    max_input_length: 128,
  },
  inference: {
    icl_examples: 1,
    batch_size: 16,
    max_seq_length: 1024,
    // `domain` averages 20 random in-domain strings per prompt; the fixed examples make that one context.
    icl_fixed: true,
    calibration_args: { calibration_fn: if calibration == 'none' then null else calibration },
  },
};

local few_shot(calibration, init) = base(calibration) + {
  dataset+: { shots: 8 },
  lora: { r: 16, lora_alpha: 32, target_modules: 'all-linear', init_lora_weights: inits[init] },
  training: { trainer_args: { num_train_epochs: 5, learning_rate: 2e-4, per_device_train_batch_size: 8 } },
};

{
  configs: {
    [std.format('zero-shot_icl1_%s', [calibration])]: base(calibration)
    for calibration in calibrations
  } + {
    [std.format('shots8_%s_%s', [init, calibration])]: few_shot(calibration, init)
    for init in std.objectFields(inits)
    for calibration in calibrations
  },
}
