"""Held-out split per data kind, held-out perplexity with intervals, learning rates per component,
and the CPT budget rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny_hf_models import build_tiny_vlm

from tasks.cpt_training.config import CptConfig
from tasks.cpt_training.run import check_budget, trace_coverage
from tasks.training.config import TrainParams
from tasks.training.model_io import load_model
from tasks.training.optim import component_of, param_groups
from tasks.training.perplexity import ppl_interval, summarize
from tasks.training.splits import data_kind, heldout_ids
from tasks.training.trainer import ScheduleTrainer, scheduler_arguments, training_arguments


@pytest.mark.parametrize("sample,kind", [
    ({"kind": "ocr", "task": "ocr_qa"}, "ocr"),
    ({"kind": "image_text", "task": "caption"}, "caption"),
    ({"kind": "image_text", "task": "caption_refined"}, "caption"),
    ({"kind": "image_text", "task": "diagnostic"}, "image_instruction"),
    ({"kind": "text", "task": "document"}, "corpus_text"),
    ({"kind": "text", "task": "atomic_qa"}, "kg_qa"),
    ({"kind": "text", "task": "passage"}, "kg_qa"),
])
def test_data_kind(sample, kind):
    assert data_kind(sample) == kind


def test_heldout_is_stratified_capped_and_seeded():
    # a rare kind (5 OCR samples among 2,000) still gets held-out samples; the cap holds
    kind_of = {f"t{i:04d}": "kg_qa" for i in range(1500)} | {f"c{i:03d}": "caption" for i in range(495)}
    kind_of |= {f"o{i}": "ocr" for i in range(5)}
    held = heldout_ids(kind_of, fraction=0.03, max_samples=60, min_per_kind=12, seed=3)
    by_kind = {k: sum(kind_of[i] == k for i in held) for k in ("kg_qa", "caption", "ocr")}
    assert by_kind["ocr"] == 2                                  # at most half of a tiny kind
    assert by_kind["kg_qa"] == by_kind["caption"] == 20         # 60 // 3 each: a large kind cannot crowd out
    assert held == sorted(held) == heldout_ids(kind_of, fraction=0.03, max_samples=60, min_per_kind=12, seed=3)
    assert held != heldout_ids(kind_of, fraction=0.03, max_samples=60, min_per_kind=12, seed=4)


def test_perplexity_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    tokens = rng.integers(20, 60, size=50)
    nll = tokens * rng.normal(2.0, 0.3, size=50)
    s = summarize(nll, tokens, seed=1)
    assert s["ppl_ci_low"] < s["ppl"] < s["ppl_ci_high"]
    assert ppl_interval(nll, tokens, seed=1) == (s["ppl_ci_low"], s["ppl_ci_high"])
    wide = summarize(nll[:8], tokens[:8], seed=1)                # fewer samples, wider interval
    assert wide["ppl_ci_high"] - wide["ppl_ci_low"] > s["ppl_ci_high"] - s["ppl_ci_low"]


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return load_model(build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model"))


def test_parameters_fall_into_vision_adapter_and_decoder(vlm):
    comps = {component_of(n) for n, _ in vlm.model.named_parameters()}
    assert comps == {"vision_tower", "adapter", "decoder"}
    assert component_of("model.language_model.embed_tokens.weight") == "decoder"
    assert component_of("lm_head.weight") == "decoder"


def test_optimizer_gets_a_learning_rate_per_component(vlm, tmp_path):
    model = vlm.model
    args = training_arguments(TrainParams(max_steps=1, threads=1, save_steps=0, learning_rate=1e-3),
                              tmp_path, seed=0)
    trainer = ScheduleTrainer(model=model, args=args, train_dataset=[], component_lr={"decoder": 2e-5,
                                                                                      "vision_tower": 5e-3})
    opt = trainer.create_optimizer()
    lr_of = {}
    for g in opt.param_groups:
        for p in g["params"]:
            lr_of[id(p)] = g["lr"]
    expect = {"vision_tower": 5e-3, "adapter": 1e-3, "decoder": 2e-5}
    named = list(model.named_parameters())
    assert len(lr_of) == len({id(p) for _, p in named if p.requires_grad})     # every parameter, once
    for name, p in named:
        assert lr_of[id(p)] == expect[component_of(name)], name
    assert any(g["weight_decay"] == 0.0 for g in opt.param_groups)          # biases / norms undecayed


def test_negative_rate_freezes_a_component_and_unknown_names_fail(vlm):
    model = vlm.model
    groups = param_groups(model, base_lr=1e-3, component_lr={"vision_tower": -1}, weight_decay=0.0)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(component_of(n) == "vision_tower" for n in frozen)
    assert all(g["component"] != "vision_tower" for g in groups)
    for _, p in model.named_parameters():
        p.requires_grad_(True)
    with pytest.raises(ValueError, match="unknown component"):
        param_groups(model, base_lr=1e-3, component_lr={"llm": 1e-5}, weight_decay=0.0)


def test_cosine_with_a_floor():
    assert scheduler_arguments(TrainParams(min_lr_ratio=0.1)) == {
        "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}}
    assert scheduler_arguments(TrainParams()) == {"lr_scheduler_type": "cosine"}
    lrs = []
    args = training_arguments(TrainParams(max_steps=20, warmup=2, min_lr_ratio=0.1, learning_rate=1.0,
                                          threads=1, save_steps=0), "/tmp/unused", seed=0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    from transformers import get_scheduler
    sched = get_scheduler(args.lr_scheduler_type, opt, num_warmup_steps=2, num_training_steps=20,
                          scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(1.0) and min(lrs[2:]) >= 0.1 - 1e-9


def test_a_step_cap_that_cuts_the_curriculum_short_is_refused():
    cfg = CptConfig(train=TrainParams(max_steps=10, batch_size=8))
    with pytest.raises(ValueError, match="would not reach its last cluster"):
        check_budget(cfg, entries=200, world_size=1)
    check_budget(cfg, entries=80, world_size=1)                                   # covers the schedule
    check_budget(dataclasses.replace(cfg, train=TrainParams(max_steps=0)), entries=10_000, world_size=1)
    check_budget(dataclasses.replace(cfg, allow_partial=True), entries=200, world_size=1)
    check_budget(cfg, entries=150, world_size=2)                                  # 10 x 8 x 2 processes


def test_trace_coverage_counts_clusters_reached_in_order():
    manifest = [{"position": i, "rank": r, "replay": False, "general": False} for i, r in enumerate([0, 0, 1, 0, 1, 2])]
    manifest += [{"position": 6, "rank": 2, "replay": True, "general": True}]
    full = trace_coverage([{"positions": [0, 1, 2]}, {"positions": [3, 4, 5, 6]}], manifest, "curriculum")
    assert full == {"entries": 7, "general": 1, "clusters_reached": 3, "clusters_in_schedule": 3,
                    "in_curriculum_order": True}
    part = trace_coverage([{"positions": [0, 1, 2]}], manifest, "curriculum")
    assert part["clusters_reached"] == 2 < part["clusters_in_schedule"]
