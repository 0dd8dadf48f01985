// One experiment, for the single-experiment commands: the MiniLM head of goemotions_ekman.jsonnet
// (GoEmotions, Ekman grouping, multi-label; see that file for the settings and docs/examples.md for the data).
// The data is the external variable `data`: a folder of train/validation/test.jsonl with `text` and
// `labels` (a list of Ekman label names):
//   python -m sft.cli run-experiment etc/configs/jsonnet/goemotions_ekman_minilm_head.jsonnet \
//     --ext-var data=data/goemotions_ekman --results-path results/goemotions
// The settings are the grid's own entry, so the two cannot drift apart.
(import 'goemotions_ekman.jsonnet').configs.minilm_head
