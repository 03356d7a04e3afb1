"""The sampler keeps the schedule's order and a resumed Trainer continues mid-epoch where it stopped."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_hf_models import build_tiny_vlm
from transformers import TrainerCallback
from vlm_fixtures import make_samples

from tasks.training.callbacks import CompletionMarkerCallback
from tasks.training.collate import Collator
from tasks.training.config import TrainParams
from tasks.training.dataset import OrderedDataset
from tasks.training.encode import EncodeParams, SampleEncoder, encode_all
from tasks.training.model_io import load_model
from tasks.training.sampler import ScheduleSampler
from tasks.training.trainer import ScheduleTrainer, training_arguments


def test_sampler_yields_the_schedule_every_epoch():
    s = ScheduleSampler(7)
    assert list(s) == list(range(7))
    s.set_epoch(3)
    assert list(s) == list(range(7))                       # no reshuffle, ever
    resumed = ScheduleSampler(7, start=4)
    assert len(resumed) == 3 and list(resumed) == [4, 5, 6]
    assert list(resumed) == list(range(7))                  # the next pass starts from the beginning
    state = ScheduleSampler(7, start=2).state_dict()
    other = ScheduleSampler(7)
    other.load_state_dict(state)
    assert list(other) == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError):
        ScheduleSampler(8).load_state_dict(state)
    with pytest.raises(ValueError):
        ScheduleSampler(3, start=4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampler")
    path = build_tiny_vlm(root / "model")
    vlm = load_model(path)
    enc = SampleEncoder(vlm.processor, EncodeParams(max_tokens=48), root, budget=vlm.budget, factor=vlm.factor)
    kept, rejected = encode_all(make_samples(root, 12), enc)   # 36 > 10 steps x 3
    assert not rejected
    order = sorted(kept, key=lambda i: (i[::-1]))          # an order that is neither file nor id order
    return root, path, kept, order, enc


class StopAfter(TrainerCallback):
    """Ends training after `step` optimizer steps (an interrupted run with the full run's schedule)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def train(tiny, out, *, max_steps, resume=None, stop_after=None):
    _, path, kept, order, enc = tiny
    vlm = load_model(path)
    ds = OrderedDataset(kept, order)
    args = training_arguments(TrainParams(max_steps=max_steps, batch_size=3, threads=1, save_steps=4,
                                          save_total_limit=5, logging_steps=1, learning_rate=1e-3), out, seed=5)
    trainer = ScheduleTrainer(model=vlm.model, args=args, train_dataset=ds,
                              data_collator=Collator(vlm.processor, enc.budget, enc.factor),
                              trace_path=out / "trace.jsonl",
                              callbacks=[CompletionMarkerCallback(ds), *([StopAfter(stop_after)] * bool(stop_after))])
    trainer.train(resume_from_checkpoint=resume)
    return trainer, [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]


def test_trainer_follows_the_schedule_and_resumes_mid_epoch(tiny, tmp_path):
    _, _, _, order, _ = tiny
    full, full_trace = train(tiny, tmp_path / "full", max_steps=10)
    assert [r["step"] for r in full_trace] == list(range(1, 11))
    flat = [i for r in full_trace for i in r["ids"]]
    assert flat == order[:30]                               # 10 steps x 3, in schedule order
    assert [p for r in full_trace for p in r["positions"]] == list(range(30))

    # a second run stops at step 4 (its checkpoint), a third resumes from it
    train(tiny, tmp_path / "split", max_steps=10, stop_after=4)
    assert (tmp_path / "split" / "checkpoint-4" / "checkpoint_complete.json").is_file()
    (tmp_path / "split" / "trace.jsonl").unlink()
    resumed, trace = train(tiny, tmp_path / "split", max_steps=10, resume=str(tmp_path / "split" / "checkpoint-4"))
    assert [r["step"] for r in trace] == list(range(5, 11)), "continues at step 5, not from the start"
    assert [p for r in trace for p in r["positions"]] == list(range(12, 30))
    assert resumed.state.global_step == full.state.global_step == 10
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name
