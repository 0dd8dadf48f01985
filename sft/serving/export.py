"""`export RUN_DIR OUT`: a self-contained predictor folder from a finished run.

By default the run's adapter is merged into the base weights (`model/`, one model to ship); a 4/8-bit
base is loaded unquantized for the merge (merging into quantized weights would round the update
away), so a merged export of a quantized run is a full-precision model whose probabilities can differ
slightly from the quantized run's. `merge=False` keeps the adapter beside a reference to the base
(`adapter/`, and the base's quantization settings in the config). The manifest (`sft.serving.manifest`)
records everything else inference needs. An adapter method that cannot merge (prompt and prefix tuning:
`sft.config.adapters`) is always exported unmerged. The folder is built under a temporary name and renamed into
place once it validates, so OUT is either complete or absent.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from sft.config import ConfigError
from sft.config.adapters import adapter_traits
from sft.predictors import predictor_for, predictor_name
from sft.predictors.base import quiet_libraries
from sft.serving.manifest import Manifest, Source, Weights, read_manifest, write_manifest
from sft.serving.runs import adapter_of, drawn_per_input, fixed_of, read_run_folder
from sft.tasks import task_for

log = logging.getLogger(__name__)


def _base_reference(name: str) -> str:
    """A local base folder as an absolute path (the export may be used from elsewhere), a hub id as is."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else name


def export_run(run_dir: str | Path, out: str | Path, merge: bool = True) -> Path:
    """Write the predictor folder of the finished run `run_dir` to `out` (which must not exist or be empty)."""
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError([f"{out}: exists and is not an empty folder; give a new folder to export to"])
    finished = read_run_folder(Path(run_dir))
    config = finished.config
    task = task_for(config)
    predictor = predictor_for(config, task)
    fixed = fixed_of(finished, task)
    adapter = adapter_of(finished)
    if not merge and adapter is None:
        raise ConfigError(
            [f"{finished.run.folder}: --no-merge needs an adapter, and this run used the base model alone"]
        )
    if merge and adapter is not None and config.lora is not None and not adapter_traits(config.lora.method).merges:
        log.info(
            "%s adapters cannot be merged into the base weights: exporting the adapter unmerged", config.lora.method
        )
        merge = False
    quantized = config.model.quantization is not None
    load_config = config
    if merge and quantized:
        log.info("Loading the 4/8-bit base unquantized to merge the adapter into full-precision weights")
        load_config = config.model_copy(update={"model": config.model.model_copy(update={"quantization": None})})
    quiet_libraries()
    loaded = predictor.load(load_config, task, fixed.labels, adapter, False)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:  # interrupted or out of space: no half-written export is left behind
        if merge:
            model = loaded.model.merge_and_unload() if adapter is not None else loaded.model
            model.save_pretrained(str(partial / "model"))
            loaded.tokenizer.save_pretrained(str(partial / "model"))
            weights = Weights(merged=True, dequantized=quantized)
        else:
            assert adapter is not None  # refused above
            shutil.copytree(adapter, partial / "adapter")
            loaded.tokenizer.save_pretrained(str(partial / "adapter"))
            weights = Weights(merged=False, base=_base_reference(config.model.name))
        template = getattr(loaded.tokenizer, "chat_template", None)
        manifest = Manifest(
            task_type=config.dataset.task_type,
            predictor=predictor_name(config, task),
            labels=fixed.labels,
            config=config.resolved(),
            weights=weights,
            chat_template=template if isinstance(template, str) else None,
            icl_examples=fixed.icl_examples,
            icl_drawn_per_input=drawn_per_input(config),
            calibration=fixed.calibration,
            thresholds=finished.results.thresholds,
            output_schema=fixed.schema,
            source=Source(
                run=str(finished.run.folder),
                experiment=finished.run.name,
                seed=finished.run.seed,
                config_hash=finished.results.config_hash,
                metrics=finished.results.metrics,
            ),
        )
        write_manifest(partial, manifest)
        read_manifest(partial)  # what `serve` and `load_export` will check
        if out.exists():
            out.rmdir()
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("Exported %s to %s (%s)", finished.run.folder, out, "merged" if merge else "adapter kept")
    return out
