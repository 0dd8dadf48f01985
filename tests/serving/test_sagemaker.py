"""The SageMaker handler called as the inference toolkit calls it: model_fn once, then input_fn,
predict_fn and output_fn per request, on an export unpacked as model.tar.gz would be."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest

from sft.serving import sagemaker
from sft.serving.payload import InputError


@pytest.mark.slow
def test_the_four_functions_answer_like_the_api(exports, tmp_path):
    from sft.serving.api import load_export

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in exports["classification"].iterdir():
            tar.add(path, arcname=path.name)
    model_dir = tmp_path / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    model = sagemaker.model_fn(str(model_dir))
    texts = ["Great value.", "Broke after a day."]
    wanted = load_export(exports["classification"]).predict(texts)
    for body in (json.dumps({"text": texts}), json.dumps(texts).encode()):
        data = sagemaker.input_fn(body, "application/json")
        answer = json.loads(sagemaker.output_fn(sagemaker.predict_fn(data, model), "application/json"))
        for mine, theirs in zip(answer["predictions"], wanted):
            assert mine["prediction"] == theirs["prediction"]
            assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-4)
    single = sagemaker.predict_fn(sagemaker.input_fn('{"text": "Great value."}', "application/json"), model)
    assert len(single["predictions"]) == 1
    with pytest.raises(InputError, match="input 0"):
        sagemaker.predict_fn(sagemaker.input_fn('{"text": [5]}', "application/json"), model)
    shutil.rmtree(model_dir)


def test_other_content_types_are_refused():
    with pytest.raises(InputError, match="not supported") as caught:
        sagemaker.input_fn("text,label", "text/csv")
    assert caught.value.status == 415
    with pytest.raises(InputError, match="not supported"):
        sagemaker.output_fn({"predictions": []}, "text/csv")
    assert sagemaker.output_fn({"predictions": []}, "application/json; charset=utf-8") == '{"predictions": []}'
    assert sagemaker.input_fn(b'{"text": "a"}', "application/json; charset=utf-8") == ["a"]
