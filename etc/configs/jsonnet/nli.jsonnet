// NLI with two input columns (premise, hypothesis) on ANLI round 1, over shots and LoRA ranks.
// The model can be swapped from the command line:
//   python -m sft.cli run-experiments etc/configs/jsonnet/nli.jsonnet --ext-var model=Qwen/Qwen2.5-0.5B-Instruct
local model = std.extVar('model');

local config(shots, rank) = {
  dataset: {
    path: 'facebook/anli',
    task_type: 'classification',
    shots: shots,
    train_split: 'train_r1',
    validation_split: 'dev_r1',
    test_split: 'test_r1',
  },
  model: { name: model },
  prompting: {
    instruction: 'Does the premise entail the hypothesis? Answer entailment, neutral or contradiction.',
    input_columns: ['premise', 'hypothesis'],
    input_template: 'Premise: {premise}\nHypothesis: {hypothesis}',
    output_column: 'label',
    max_input_length: 256,
  },
  inference: { icl_examples: 0, batch_size: 16 },
} + (if shots > 0 then {
       lora: { r: rank, lora_alpha: 2 * rank, target_modules: 'all-linear' },
       training: { trainer_args: { num_train_epochs: 4, learning_rate: 3e-4, per_device_train_batch_size: 8 } },
     } else {});

{
  configs: { 'anli-r1_zero-shot': config(0, 0) } + {
    [std.format('anli-r1_shots%d_r%d', [shots, rank])]: config(shots, rank)
    for shots in [16, 64]
    for rank in [4, 16]
  },
}
