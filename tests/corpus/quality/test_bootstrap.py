"""The self-bootstrapped loop on a small real MedQuAD sample: accuracy, determinism, stopping."""

from __future__ import annotations

import hashlib

import pytest

from tasks.corpus.quality import classifier
from tasks.corpus.quality.bootstrap import BootstrapParams, bootstrap
from tasks.corpus.quality.signals import build_vocab
from tasks.corpus.quality.verifiers import LocalVerifier

PARAMS = dict(seed_size=300, pool_sample_per_round=200, holdout_size=150, max_rounds=2,
              target_accuracy=0.99, seed=1234)


def run_once(pool, rejected, tmp_path, name, **over):
    params = BootstrapParams(**{**PARAMS, **over})
    logged = []
    result = bootstrap(pool, rejected, params, LocalVerifier(vocab=build_vocab(pool)),
                       on_round=lambda r, m: logged.append((r, m)))
    path = tmp_path / f"{name}.bin"
    result.model.save_model(str(path))
    return result, logged, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample(medquad, medquad_all):
    pool = medquad[:1200]
    rejected = [t for t in medquad_all if 20 <= len(t) < 200][:100]
    return pool, rejected


def test_loop_reaches_reported_accuracy_and_is_deterministic(sample, tmp_path):
    pool, rejected = sample
    a, logged, sha_a = run_once(pool, rejected, tmp_path, "a")
    b, _, sha_b = run_once(pool, rejected, tmp_path, "b")

    assert [r["round"] for r in a.rounds] == [0, 1, 2]
    final = a.rounds[-1]
    # measured: 0.77 (seed) -> 0.83 -> 0.92 on this sample; the floor leaves room for fastText
    # version drift but would catch a broken loop (a constant classifier scores 0.5).
    assert final["accuracy"] >= 0.88 and final["accuracy"] > a.rounds[0]["accuracy"]
    assert a.stop_reason == "max_rounds" and a.reached_target == (final["accuracy"] >= 0.99)
    for r in a.rounds[1:]:
        assert r["sampled"] == 200 and r["verified_high"] + r["verified_low"] == 200
        assert 0.0 <= r["agreement"] <= 1.0 and r["train_high"] == r["train_low"]
    assert a.holdout == {"size": 150, "real": 75, "degraded": 75,
                         "real_high": a.holdout["real_high"], "verify_failures": 0}

    # the reported accuracy is what the final model scores on the hold-out
    assert [step for step, _ in logged] == [0, 1, 2]
    assert logged[-1][1]["accuracy"] == final["accuracy"]

    # deterministic: same metrics, bit-identical model file, same scores
    assert a.rounds == b.rounds
    assert sha_a == sha_b
    assert classifier.scores(a.model, pool[-50:]) == classifier.scores(b.model, pool[-50:])


def test_stops_at_target_after_min_rounds(sample, tmp_path):
    pool, rejected = sample
    result, _, _ = run_once(pool, rejected, tmp_path, "t", target_accuracy=0.5, max_rounds=4)
    assert result.stop_reason == "target_accuracy" and len(result.rounds) == 2
    result, _, _ = run_once(pool, rejected, tmp_path, "t0", target_accuracy=0.5, min_rounds=0)
    assert len(result.rounds) == 1 and result.reached_target


def test_pool_exhaustion_and_no_positives(sample, tmp_path):
    pool, rejected = sample
    result, _, _ = run_once(pool[:450], rejected, tmp_path, "p")
    assert result.stop_reason == "pool_exhausted" and len(result.rounds) == 2
    with pytest.raises(ValueError, match="no seed positives"):
        bootstrap(["Home | Login | Search"] * 50, [], BootstrapParams(**{**PARAMS, "seed_size": 20,
                                                                           "holdout_size": 10}),
                  LocalVerifier())
