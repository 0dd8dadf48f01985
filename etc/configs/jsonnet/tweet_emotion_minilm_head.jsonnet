// One experiment, for the single-experiment commands: the MiniLM head of tweet_emotion.jsonnet
// (TweetEval emotion, 4 labels; a classification head on the all-MiniLM-L6-v2 encoder).
// The data is the external variable `data`: the hub id cardiffnlp/tweet_eval (its config `emotion` is
// added), or a local folder with the same splits (train/validation/test.jsonl with `text` and `label`):
//   python -m sft.cli run-experiment etc/configs/jsonnet/tweet_emotion_minilm_head.jsonnet \
//     --ext-var data=cardiffnlp/tweet_eval --results-path results/emotion
// The settings are the grid's own entry, so the two cannot drift apart.
(import 'tweet_emotion.jsonnet').configs.minilm_head
