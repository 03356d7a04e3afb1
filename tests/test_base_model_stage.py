"""`python -m tasks.base_model` end to end on the micro tiny variant, with no `base_model:`
section in params.yaml (every key has a default): outputs, MLflow run, and a rebuild that gives
byte-identical model, tokenizer and summary."""

from __future__ import annotations

import json

import mlflow
import pytest
from vlm_fixtures import stage_args, write_corpus

from tasks.common.io import file_sha256
from tasks.common.tracking import EXPERIMENT, tracking_uri


@pytest.fixture()
def bare_project(tmp_path, monkeypatch):
    """A project root whose params.yaml has no base_model section."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text("profile: default\nseed: 7\n")
    monkeypatch.setenv("MEDX_PROJECT_ROOT", str(root))
    return root


def run_stage(corpus, out, *extra):
    from tasks import base_model
    from tasks.common.stage import main
    return main(base_model.STAGE, stage_args(corpus, out, *extra))


def test_stage_end_to_end_and_rebuild_is_identical(bare_project, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "base_model"
    summary = run_stage(corpus, out)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["variant"] == "tiny" and summary["sanity"]["image_source"] == "img-good"
    assert not list(tmp_path.glob(".base_model.tmp-*"))                   # atomic: no leftovers

    mlflow.set_tracking_uri(tracking_uri())
    (run,) = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    m = run.data.metrics
    assert m["params.total"] == summary["parameters"]["total"]
    assert m["sanity.text_loss"] == summary["sanity"]["text_loss"]
    assert m["forward_tokens_per_s"] > 0 and m["tokenizer.bytes_per_token"] > 1
    assert run.data.params["variant"] == "tiny" and run.data.tags["stage"] == "base_model"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "base_model")}
    assert {"base_model/summary.json", "base_model/chat_template.jinja"} <= artifacts

    assert m["tokenizer.special_token_ids.im_start"] == summary["tokenizer"]["special_token_ids"]["im_start"]
    # no output names where the checkout, the corpus or the output directory lives
    for p in [out / "summary.json", *(out / "model").iterdir()]:
        if p.suffix in (".json", ".md", ".jinja"):
            assert str(tmp_path) not in p.read_text(), p.name

    hashes = {p.name: file_sha256(p) for p in (out / "model").iterdir()}
    again = tmp_path / "again"
    run_stage(corpus, again)
    assert {p.name: file_sha256(p) for p in (again / "model").iterdir()} == hashes
    assert (again / "summary.json").read_bytes() == (out / "summary.json").read_bytes()


def test_stage_without_corpus_texts_fails_clearly(bare_project, tmp_path):
    empty = tmp_path / "empty"
    (empty / "kept").mkdir(parents=True)
    corpus = {"kept": empty / "kept", "image_root": empty}
    with pytest.raises(RuntimeError, match="no non-empty texts"):
        run_stage(corpus, tmp_path / "out")
    assert not (tmp_path / "out").exists()
