"""style=auto: a checkpoint trained with reasoning blocks is evaluated with the thinking template."""

from __future__ import annotations

from eval.harness import EvalConfig
from models.checkpoint import write_meta
from models.config import ImageBudget, SpecialTokens


def checkpoint(path, **extra):
    path.mkdir(parents=True)
    write_meta(path, variant="tiny", budget=ImageBudget(), factor=28, tokens=SpecialTokens(), extra=extra or None)
    return str(path)


def test_auto_style_follows_the_checkpoint_meta(tmp_path):
    mid = checkpoint(tmp_path / "mid", stage="mid_train", thinking_trained=True)
    cpt = checkpoint(tmp_path / "cpt", stage="cpt")
    assert EvalConfig(model_path=mid).settings().style == "thinking"
    assert EvalConfig(model_path=cpt).settings().style == "direct"
    assert EvalConfig(model_path=str(tmp_path / "none")).settings().style == "direct"     # no meta: direct
    assert EvalConfig(model_path=mid, style="direct").settings().style == "direct"      # an explicit style wins
    assert EvalConfig(predictions="p.jsonl").settings().style == "direct"
