from dataclasses import dataclass, field

import pytest

from tasks.common.config import ConfigError, build, load_stage_config, parse_overrides


@dataclass
class Inner:
    n: int = 1
    ratio: float = 0.5


@dataclass
class Cfg:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    seed: int = 0


def write_params(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_profile_and_cli_overrides_merge_in_order(tmp_path):
    p = write_params(tmp_path, "profile: tiny\nseed: 7\nstage:\n  name: a\n  inner: {n: 2}\n"
                               "profiles:\n  tiny:\n    stage: {inner: {n: 3}}\n")
    cfg, profile = load_stage_config("stage", Cfg, ["inner.ratio=1"], params_path=p)
    assert profile == "tiny"
    assert cfg == Cfg(name="a", inner=Inner(n=3, ratio=1.0), seed=7)


def test_unknown_key_fails_loudly(tmp_path):
    p = write_params(tmp_path, "stage:\n  nmae: typo\n")
    with pytest.raises(ConfigError, match="unknown key.*nmae"):
        load_stage_config("stage", Cfg, [], params_path=p)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"stage.inner.n: expected int, got str"):
        build(Cfg, {"inner": {"n": "many"}}, "stage")
    with pytest.raises(ConfigError, match="expected int, got bool"):
        build(Cfg, {"inner": {"n": True}}, "stage")


def test_unknown_profile(tmp_path):
    p = write_params(tmp_path, "profile: huge\nstage: {}\n")
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_stage_config("stage", Cfg, [], params_path=p)


def test_parse_overrides():
    assert parse_overrides(["a.b=1", "c=x", "d=[1, 2]"]) == {"a": {"b": 1}, "c": "x", "d": [1, 2]}
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])
