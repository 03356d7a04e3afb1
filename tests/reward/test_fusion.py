import math

import pytest

from tasks.reward.fusion import FusionParams, dynamic_weights, expert_rank, fuse, partial_order_correct

P = FusionParams()


def test_power_mean_closed_task_with_multipliers():
    # closed: rule .7, process .15, pairwise .15; p = .5
    # sum w sqrt(x) = .7*1 + .15*.8 + .15*.6 = .91 -> .91^2 = .8281; * shaping .8 * safety 1 = .66248
    f = fuse({"rule": 1.0, "process": 0.64, "pairwise": 0.36, "shaping": 0.8, "safety": 1.0}, "closed", P)
    assert f.detail["mean"] == pytest.approx(0.8281)
    assert f.value == pytest.approx(0.66248)
    assert f.weights == pytest.approx({"rule": 0.7, "process": 0.15, "pairwise": 0.15})


def test_missing_component_is_dropped_and_weights_renormalised():
    # pairwise None: rule .7/.85, process .15/.85; (.7*sqrt(.25) + .15*sqrt(1)) / .85 = .5/.85 = .588235...
    # squared: .346021
    f = fuse({"rule": 0.25, "process": 1.0, "pairwise": None}, "closed", P)
    assert f.weights == pytest.approx({"rule": 0.7 / 0.85, "process": 0.15 / 0.85})
    assert f.value == pytest.approx((0.5 / 0.85) ** 2)
    assert f.value == pytest.approx(0.346021, abs=1e-6)
    assert f.detail["dropped"] == ["pairwise"]


def test_zero_primary_pulls_down_more_than_linear():
    comps = {"rule": 0.0, "process": 1.0, "pairwise": 1.0}
    # linear: .7*0 + .15 + .15 = .3; power .5: (.15*1 + .15*1)^2 = .09
    assert fuse(comps, "closed", FusionParams(power=1.0)).value == pytest.approx(0.3)
    assert fuse(comps, "closed", P).value == pytest.approx(0.09)


def test_geometric_mean_at_power_zero():
    # .25^.7 * 1^.15 * 1^.15 = exp(.7 ln .25) = .378929
    f = fuse({"rule": 0.25, "process": 1.0, "pairwise": 1.0}, "closed", FusionParams(power=0.0))
    assert f.value == pytest.approx(math.exp(0.7 * math.log(0.25)))
    assert f.value == pytest.approx(0.378929, abs=1e-6)
    assert fuse({"rule": 0.0, "process": 1.0}, "closed", FusionParams(power=0.0)).value == 0.0


def test_open_task_weights_and_safety_gate_zeroes():
    # open: rubric .5, pairwise .3, process .2; all .49 -> mean .49 whatever the weights
    f = fuse({"rubric": 0.49, "pairwise": 0.49, "process": 0.49, "safety": 0.0}, "open", P)
    assert f.detail["mean"] == pytest.approx(0.49)
    assert f.value == 0.0


def test_component_without_weight_for_task_is_ignored():
    # instruct has no weight for closed: result equals the one without it (rule only -> 0.81)
    f = fuse({"rule": 0.81, "instruct": 0.0}, "closed", P)
    assert f.value == pytest.approx(0.81)
    assert f.detail["ignored"] == ["instruct"]


def test_explicit_weights_override_task_base():
    # .5*sqrt(1) + .5*sqrt(0) = .5 -> .25
    f = fuse({"rule": 1.0, "process": 0.0}, "closed", P, weights={"rule": 0.5, "process": 0.5})
    assert f.value == pytest.approx(0.25)


@pytest.mark.parametrize("comps, task", [
    ({"rule": 1.0}, "nope"),                          # unknown task
    ({"pairwise": None, "shaping": 1.0}, "closed"),   # nothing weighted present
    ({"rule": 1.2}, "closed"),                        # out of [0, 1]
    ({"rule": 1.0, "shaping": -0.1}, "closed"),
])
def test_fuse_rejects(comps, task):
    with pytest.raises(ValueError):
        fuse(comps, task, P)


def test_params_validation():
    with pytest.raises(ValueError):
        FusionParams(min_share=0.0)
    with pytest.raises(ValueError):
        FusionParams(weights={"closed": {"rule": -1.0, "process": 2.0}})


def test_dynamic_weights_down_weight_flat_components():
    base = {"rule": 0.7, "process": 0.15, "pairwise": 0.15}
    history = {"rule": [1.0, 1.0, 1.0, 1.0],          # std 0    -> share clip(0, .2, 1) = .2
               "process": [0.0, 1.0, 0.0, 1.0],       # std .5   -> share clip(5, .2, 1) = 1
               "pairwise": [0.5, 0.55, 0.5, 0.55]}    # std .025 -> share .25
    # raw: .14, .15, .0375; total .3275
    w = dynamic_weights(history, base, P)
    assert w == pytest.approx({"rule": 0.14 / 0.3275, "process": 0.15 / 0.3275, "pairwise": 0.0375 / 0.3275})
    assert w["rule"] == pytest.approx(0.427481, abs=1e-6)


def test_dynamic_weights_keep_base_without_evidence():
    # fewer than 2 values (None skipped) -> base share 1; sum .5 + .5 -> unchanged
    w = dynamic_weights({"rubric": [0.3, None], "process": []}, {"rubric": 0.5, "process": 0.5}, P)
    assert w == pytest.approx({"rubric": 0.5, "process": 0.5})


def test_partial_order_example_pools_everything():
    # rank order 1, 2, 3 -> values .9, .5, .2: .9 > .5 pool (.7), .7 > .2 pool -> (.9 + .5 + .2) / 3
    out = partial_order_correct([0.9, 0.2, 0.5], [1, 3, 2])
    assert out == pytest.approx([1.6 / 3] * 3)


def test_partial_order_leaves_consistent_values_untouched():
    values = [0.1, 0.9, 0.5, 0.5]
    assert partial_order_correct(values, [0, 3, 2, 2]) == values


def test_partial_order_pools_only_the_violating_run():
    # ranks 0..3: .2, .6, .4, 1.0 -> .6 > .4 pooled to .5
    assert partial_order_correct([0.2, 0.6, 0.4, 1.0], [0, 1, 2, 3]) == pytest.approx([0.2, 0.5, 0.5, 1.0])


def test_partial_order_with_several_completions_per_class():
    # class 2: .3, .8; class 3: .6, .9 -> ordered .3, .8, .6, .9 -> .8 > .6 pooled to .7
    assert partial_order_correct([0.8, 0.3, 0.6, 0.9], [2, 2, 3, 3]) == pytest.approx([0.7, 0.3, 0.7, 0.9])


def test_partial_order_rejects_length_mismatch():
    with pytest.raises(ValueError):
        partial_order_correct([0.1, 0.2], [1])


@pytest.mark.parametrize("comps, rank", [
    ({"rule": 1.0, "safety": 0.0}, 0),
    ({"rule": 1.0, "safety": 1.0}, 3),
    ({"rule": 0.9995}, 3),
    ({"rubric": 0.6, "pairwise": 1.0}, 2),
    ({"rule": 0.4, "rubric": 1.0}, 1),              # rule comes first among the primaries
    ({"instruct": 1.0, "rubric": 0.2}, 3),
    ({"rule": None, "rubric": 0.5}, 2),
    ({"pairwise": 1.0}, 1),                         # no primary: correctness unknown
])
def test_expert_rank(comps, rank):
    assert expert_rank(comps) == rank
