"""Held-out medical perplexity in the harness (eval/heldout.py): the CPT held-out split measured per data
kind with intervals for a project checkpoint, the same figure the cpt stage measures, and a clear
"not measured" for anything else."""

from __future__ import annotations

import json

import pytest
from tiny_hf_models import build_tiny_vlm
from training.cpt_project import in_project
from vlm_fixtures import make_samples, write_jsonl

from eval.heldout import HeldoutConfig, heldout_perplexity
from eval.report import build
from tasks.training.collate import Collator
from tasks.training.dataset import OrderedDataset
from tasks.training.encode import EncodeParams, SampleEncoder, encode_all
from tasks.training.model_io import load_model
from tasks.training.perplexity import perplexity


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    build_tiny_vlm(root / "data" / "base_model" / "model")
    samples = make_samples(root, 12)
    write_jsonl(root / "data" / "cpt_data" / "samples" / "part-00000.jsonl", samples)
    held = [s for s in samples if s["id"].endswith(("1", "4", "8"))]
    write_jsonl(root / "data" / "cpt_order" / "heldout.jsonl", [{"id": s["id"], "kind": s["kind"]} for s in held]
                + [{"id": "gone-from-the-shards", "kind": "text"}])
    return root, held


def test_project_checkpoint_is_measured_per_kind_as_cpt_measures_it(project):
    root, held = project
    cfg = HeldoutConfig(max_tokens=64, batch_size=4)
    with in_project(root):
        result = heldout_perplexity(cfg, root / "data" / "base_model" / "model", device="cpu")
        again = heldout_perplexity(cfg, root / "data" / "base_model" / "model", device="cpu")
        # the cpt stage's own measurement on the same samples: the same number
        vlm = load_model(root / "data" / "base_model" / "model")
        encoder = SampleEncoder(vlm.processor, EncodeParams(max_tokens=64), root, budget=vlm.budget, factor=vlm.factor)
        encoded, _ = encode_all(held, encoder)
        ref = perplexity(vlm.model, OrderedDataset(encoded, [s["id"] for s in held]),
                         Collator(vlm.processor, encoder.budget, encoder.factor), 4)
    assert result == again                                                   # seeded interval
    assert result["measured"] and result["samples"] == len(held) and result["missing"] == 1
    assert result["overall"]["ppl"] == pytest.approx(ref["ppl"], rel=1e-5)
    assert set(result["by_kind"]) == {"caption", "kg_qa", "corpus_text"}
    for row in [result["overall"], *result["by_kind"].values()]:
        assert row["ppl_ci_low"] <= row["ppl"] <= row["ppl_ci_high"] and row["tokens"] > 0
    assert sum(r["samples"] for r in result["by_kind"].values()) == result["samples"]


def test_not_measured_says_why(project, tmp_path):
    root, _ = project
    with in_project(root):
        no_split = heldout_perplexity(HeldoutConfig(heldout="data/none.jsonl"), root / "data" / "base_model" / "model")
        foreign = heldout_perplexity(HeldoutConfig(), tmp_path)
    assert no_split == {"measured": False, "reason": "data/none.jsonl missing (run the cpt_order stage)"}
    assert not foreign["measured"] and "medx_model.json" in foreign["reason"]


def test_report_carries_the_section(project):
    from eval.runner import EvalResult

    root, held = project
    with in_project(root):
        measured = heldout_perplexity(HeldoutConfig(max_tokens=64), root / "data" / "base_model" / "model",
                                      device="cpu")
    result = EvalResult(specs=[], rows=[], read={}, valid={}, selected={}, skipped=[], quarantined=[],
                        model={"adapter": "hf"}, fingerprint="f", timings={}, adapter_stats={})
    metrics, summary = build(result, None, root, measured)
    assert metrics["heldout_perplexity"]["overall"] == measured["overall"]
    assert summary["heldout_perplexity"] == {"samples": len(held), "missing": 1, "rejected": 0}
    json.dumps(metrics)
