"""Every bad input is refused before the first experiment starts: through the real command line,
each case exits 2, names the key path (or option) and the fix, and leaves the results folder byte for byte
as it was. One case per class: settings only a model load used to catch (the preflight), values accepted
silently, labels, command-line options, the results folder, data files, and single commands."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import classification_config, merge, training_sections
from typer.testing import CliRunner

from sft.cli import app
from sft.results.layout import FORKSERVER_LOG, REPORT_FILES, TRACKING_STORE
from sft.synthetic import sentiment_examples, write_splits


def tree_hash(folder: Path) -> str:
    """Every path, file content and mode below `folder`: equal hashes mean nothing was touched."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(str(path.stat().st_mode).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder holding one finished run ("exp", seed 42) and a report."""
    run = tmp_path / "results" / "exp" / "seed-42"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"finished": true}\n')
    (run / "results.json").write_text('{"metrics": {"accuracy": 0.9}}\n')
    (run / "run.log").write_text("finished\n")
    (tmp_path / "results" / "aggregated_results.md").write_text("# earlier results\n")
    return tmp_path / "results"


@pytest.fixture
def base(sentiment_data, tiny_llama) -> dict[str, Any]:
    return classification_config(sentiment_data, tiny_llama)


def refused(results: Path, *args: Any, names: tuple[str, ...]) -> str:
    """Run the command line; assert exit 2, each of `names` in the message, no traceback, nothing touched."""
    before = tree_hash(results)
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    for name in names:
        assert name in output, output
    assert tree_hash(results) == before
    return output


def write(path: Path, value: Any) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return path


def run_grid(tmp_path: Path, results: Path, raw: Any, *options: str, names: tuple[str, ...]) -> str:
    grid = write(tmp_path / "grid.json", raw)
    return refused(results, "run-experiments", grid, "--results-path", results, *options, names=names)


# -- settings only a model load used to catch: the preflight ----------------------------------------------------


@pytest.mark.parametrize(
    "sections, names",
    [
        ({"model": {"name": "/nowhere/model"}}, ("model.name", "no folder '/nowhere/model'")),
        ({"model": {"name": "someorg/no-such-model"}}, ("model.name", "offline mode (HF_HUB_OFFLINE=1)")),
        ({"model": {"chat_template": "missing.jinja"}}, ("model.chat_template", "does not exist")),
        ({"model": {"device": "cuda:0"}}, ("model.device", "remove model.device")),
        ({"inference": {"max_seq_length": 8}}, ("inference.max_seq_length", "raise it")),
        (
            merge(training_sections(), {"lora": {"r": 4, "lora_alpha": 8, "target_modules": ["nope_proj"]}}),
            ("lora.target_modules", "nope_proj", "q_proj"),
        ),
        (
            merge(training_sections(), {"training": {"trainer_args": {"learning_rate": "fast"}}}),
            ("training.trainer_args.learning_rate", "'fast'"),
        ),
        (
            merge(training_sections(), {"model": {"head": "classification"}, "lora": {"target_modules": ["nope"]},
                                        "training": {"trainer_args": {"num_train_epochs": True}}}),
            ("lora.target_modules", "nope", "training.trainer_args.num_train_epochs"),
        ),
    ],
    ids=["missing-folder", "uncached-hub-id", "template-file", "cuda-without-gpu", "max-seq-length", "lora-targets",
         "trainer-arg-type", "head-mode"],
)  # fmt: skip
def test_model_settings_are_checked_by_validate_and_run_experiments(tmp_path, results, base, sections, names):
    if sections.get("model", {}).get("device") == "cuda:0":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    raw = merge(base, {key: {**base.get(key, {}), **value} for key, value in sections.items()})
    grid = write(tmp_path / "grid.json", raw)
    refused(results, "validate", grid, names=names)
    refused(results, "run-experiments", grid, "--results-path", results, names=names)


# -- accepted silently before ----------------------------------------------------------------------------------


def test_a_bool_never_passes_for_an_int(tmp_path, results, base):
    run_grid(tmp_path, results, merge(base, {"dataset": {"shots": True}}), names=("dataset.shots", "integer"))


def test_two_experiments_of_one_name_in_a_json_grid(tmp_path, results, base):
    config = json.dumps(base)
    text = f'{{"configs": {{"a": {config}, "a": {config}}}}}'
    run_grid(tmp_path, results, text, names=("key 'a' appears twice",))


# -- labels ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, kind", [("", "empty or whitespace-only"), ("  ", "empty or whitespace-only"),
                                       (None, "null")])  # fmt: skip
def test_blank_labels_are_counted_per_split(tmp_path, results, tiny_llama, bad, kind):
    train = sentiment_examples(12, seed=1)
    for example in train[:3]:
        example["label"] = bad
    data = write_splits(tmp_path / "data", {"train": train, "test": sentiment_examples(6, seed=2)})
    raw = classification_config(data, tiny_llama, dataset={"shots": 0}, inference={"icl_examples": 1})
    run_grid(tmp_path, results, raw, names=("prompting.output_column", f"split 'train' has 3 {kind} label(s)"))


# -- command-line options -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, names",
    [
        (("--timeout", "-1"), ("--timeout must be a positive number",)),
        (("--seeds=-1",), ("--seeds: seed -1 is out of range",)),
        (("--random-seed", str(2**40)), ("--seeds: seed 1099511627776 is out of range",)),
        (("--jobs", "0"), ("--jobs must be at least 1",)),
        (("--retries", "-1"), ("--retries must be 0 or more",)),
        (("--executor", "forkserve"), ("unknown executor 'forkserve'",)),
    ],
)
def test_bad_options_are_refused_before_the_data_is_read(tmp_path, results, base, options, names):
    # the dataset path does not exist: an option problem must be reported without reading any data
    raw = merge(base, {"dataset": {"path": str(tmp_path / "no-data")}})
    output = run_grid(tmp_path, results, raw, *options, names=names)
    assert "no-data" not in output


def test_gpus_that_are_not_there(tmp_path, results, base):
    import torch

    present = torch.cuda.device_count()
    run_grid(tmp_path, results, base, "--gpus", str(present), names=("--gpus", "not found", "Drop --gpus"))


# -- the results folder -----------------------------------------------------------------------------------------------


def test_results_path_under_a_file(tmp_path, results, base):
    blocker = write(tmp_path / "a-file", "x")
    grid = write(tmp_path / "grid.json", base)
    refused(results, "run-experiments", grid, "--results-path", blocker / "out", names=("--results-path", "a-file"))
    refused(results, "evaluate", grid, "--results-path", blocker / "out", names=("--results-path",))
    assert blocker.read_text() == "x"


def test_an_experiment_named_like_the_report(tmp_path, results, base):
    run_grid(tmp_path, results, {"configs": {"aggregated_results.md": base}}, names=("'aggregated_results.md'",
                                                                                    "reserved"))  # fmt: skip


@pytest.mark.faults
@pytest.mark.parametrize("name", [FORKSERVER_LOG, "Forkserver.LOG", *REPORT_FILES, TRACKING_STORE])
def test_every_file_the_results_folder_keeps_is_a_reserved_experiment_name(tmp_path, results, base, name):
    (results / FORKSERVER_LOG).write_text("the fork server's log\n")
    run_grid(tmp_path, results, {"configs": {name: base}}, names=(repr(name), "reserved", "rename the experiment"))
    assert (results / FORKSERVER_LOG).read_text() == "the fork server's log\n"


@pytest.mark.faults
@pytest.mark.parametrize("where", ["/sys/sft-results", "/proc/sft-results", "under-a-file", "long-name"])
def test_a_results_path_nothing_can_be_written_to_is_one_error_before_any_run(tmp_path, results, base, where):
    """Also as root, whom every permission check lets through: the check creates something there."""
    blocker = write(tmp_path / "a-file", "x")
    path = {"under-a-file": blocker / "deeper" / "out", "long-name": tmp_path / ("r" * 300)}.get(where, Path(where))
    grid = write(tmp_path / "grid.json", base)
    for command in (("run-experiments", grid), ("evaluate", grid)):
        refused(results, *command, "--results-path", path, names=("--results-path",))
    assert not Path(where).exists() and blocker.read_text() == "x"


@pytest.mark.faults
def test_a_results_path_on_a_read_only_filesystem(tmp_path, results, base):
    mount = tmp_path / "read-only"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True,
                       capture_output=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot mount a read-only tmpfs here: {error}")
    try:
        grid = write(tmp_path / "grid.json", base)
        output = refused(results, "run-experiments", grid, "--results-path", mount / "out", names=("--results-path",))
        assert "read-only filesystem" in output and not list(mount.iterdir())
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.faults
def test_a_4bit_model_the_cpu_kernel_cannot_run_is_refused_with_layer_shape_and_fix(tmp_path, results, sentiment_data):
    """bitsandbytes repacks 4-bit weights for its CPU kernel at the first evaluation, which asserts that each
    layer's width is a multiple of its block: an MLP 688 wide trained, then crashed. Refused up front now."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes.functional

    from sft.synthetic import save_tiny_model

    if not bitsandbytes.functional.has_avx512bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes takes its plain path, which runs any shape")
    model = save_tiny_model(tmp_path / "odd-mlp", architecture="qwen2", seed=4, intermediate_size=688)
    quantization = {"config_class": "BitsAndBytesConfig", "args": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}}
    raw = merge(classification_config(sentiment_data, model), training_sections())
    raw = merge(raw, {"model": {"device": "cpu", "quantization": quantization}})
    grid = write(tmp_path / "grid.json", raw)
    names = ("model.quantization", "layer model.layers.0.mlp.gate_proj", "688 x 64", "multiple of 32", "remove")
    refused(results, "validate", grid, names=names)
    refused(results, "run-experiments", grid, "--results-path", results, names=names)
    # a width the kernel takes passes
    fine = save_tiny_model(tmp_path / "fine-mlp", architecture="qwen2", seed=4, intermediate_size=704)
    good = write(tmp_path / "ok.json", merge(raw, {"model": {"name": str(fine)}}))
    result = CliRunner().invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output


# -- data files --------------------------------------------------------------------------------------------------------


def test_a_truncated_jsonl_line_is_named_by_file_and_line(tmp_path, results, tiny_llama):
    data = write_splits(tmp_path / "data", {"train": sentiment_examples(6, 1), "test": sentiment_examples(4, 2)})
    lines = (data / "test.jsonl").read_text().splitlines()
    (data / "test.jsonl").write_text("\n".join([*lines[:2], lines[2][:20], *lines[3:]]) + "\n")
    raw = classification_config(data, tiny_llama)
    run_grid(tmp_path, results, raw, names=("dataset.path", "test.jsonl:3: not valid JSON"))


def test_an_empty_test_file_names_the_split(tmp_path, results, tiny_llama):
    data = write_splits(tmp_path / "data", {"train": sentiment_examples(6, 1), "test": sentiment_examples(4, 2)})
    (data / "test.jsonl").write_text("")
    run_grid(tmp_path, results, classification_config(data, tiny_llama), names=("test.jsonl is empty", "'test'"))


def test_a_tsv_file_is_read_with_tabs(tmp_path):
    from sft.config import DatasetConfig
    from sft.data.splits import load_splits

    path = write(tmp_path / "reviews.tsv", "text\tlabel\ngood, really good\tpositive\nbad\tnegative\n")
    train = load_splits(DatasetConfig(path=str(path)))["train"]
    assert train.column_names == ["text", "label"]
    assert train[0] == {"text": "good, really good", "label": "positive"}


# -- single commands --------------------------------------------------------------------------------------------------


def test_evaluate_with_a_bad_column_touches_no_run_folder(tmp_path, results, base):
    config = write(tmp_path / "exp.json", merge(base, {"prompting": {"input_columns": ["txt"]}}))
    refused(results, "evaluate", config, "--results-path", results, names=("prompting", "'txt'"))
    refused(results, "evaluate", config, "--results-path", results, "--name", "new", names=("'txt'",))
    assert not (results / "new").exists()


def test_evaluate_with_a_missing_model_keeps_the_finished_config(tmp_path, results, base):
    config = write(tmp_path / "exp.json", merge(base, {"model": {"name": str(tmp_path / "gone")}}))
    refused(results, "evaluate", config, "--results-path", results, names=("model.name",))
    assert (results / "exp" / "seed-42" / "config.json").read_text() == '{"finished": true}\n'


def test_predict_without_the_trained_adapter_is_refused_up_front(tmp_path, results, base):
    config = write(tmp_path / "exp.json", merge(base, training_sections()))
    refused(results, "predict", config, "--results-path", results, names=("no trained adapter",))
