"""tasks/common/engine.py: shards of JSONL input read exactly as io.iter_records reads the files,
per-shard accounting, results in shard order, and the `engine:` section with its overrides.

    .venv/bin/python -m pytest -q tests/common/test_engine.py
"""

from __future__ import annotations

import json

import pytest

from tasks.common.config import ConfigError, load_stage_config, split_section_overrides
from tasks.common.engine import (
    EngineConfig,
    ShardLedger,
    check_shard_accounting,
    iter_shard_records,
    map_shards,
    plan_jsonl_shards,
)
from tasks.common.io import StageSink, iter_records
from tasks.common.records import make_record


def _line(i: int) -> str:
    return json.dumps(make_record("medquad", i, f"text {i}")) + "\n"


@pytest.fixture
def two_files(tmp_path):
    """Two part files: 5 and 4 items, with a blank line, bad JSON, invalid UTF-8, an invalid
    record and a line over a 200-byte cap among them."""
    a = tmp_path / "part-00000.jsonl"
    a.write_bytes((_line(0) + "\n" + _line(1) + "{not json\n" + _line(2)).encode() + b"\xff\xfe\n")
    b = tmp_path / "part-00001.jsonl"
    b.write_bytes((json.dumps({"id": "x"}) + "\n" + _line(3) + json.dumps({"pad": "y" * 300}) + "\n"
                   + _line(4) + "\n\n").encode())
    return [a, b]


@pytest.mark.parametrize("per_shard", [1, 2, 3, 4, 100])
def test_shards_read_exactly_what_iter_records_reads(two_files, per_shard):
    expected = list(iter_records(two_files, max_line_bytes=200))
    plan = plan_jsonl_shards(two_files, per_shard, max_line_bytes=200)
    got = [pair for shard in plan.shards for pair in iter_shard_records(shard, max_line_bytes=200)]
    assert got == expected                      # records, reasons and file:line locators
    assert len(expected) == 9 and not plan.truncated
    assert [s.items for s in plan.shards] == [min(per_shard, 9 - i) for i in range(0, 9, per_shard)]
    reasons = [rej["reason"] for _, rej in got if rej is not None]
    assert reasons == ["bad_json", "invalid_utf8", "missing_field", "line_too_large"]
    assert got[2][1]["locator"] == f"{two_files[0]}:4" and got[7][1]["locator"] == f"{two_files[1]}:3"


def test_shards_span_files_and_stop_at_a_limit(two_files):
    plan = plan_jsonl_shards(two_files, 4)
    assert [len(s.slices) for s in plan.shards] == [1, 2, 1]   # 4 | 1 + 3 | 1 items
    assert plan.shards[1].slices[1].first_line == 1
    capped = plan_jsonl_shards(two_files, 4, limit=6)
    assert [s.items for s in capped.shards] == [4, 2] and capped.truncated
    assert not plan_jsonl_shards(two_files, 4, limit=9).truncated    # exactly everything
    first6 = [pair for s in capped.shards for pair in iter_shard_records(s)]
    assert first6 == list(iter_records(two_files))[:6]


def _square(shard: int, shared: dict) -> int:
    return shard * shard + shared["offset"]


def test_map_shards_in_process_keeps_shard_order():
    out = list(map_shards(_square, [3, 1, 2], cfg=EngineConfig(workers=1), shared={"offset": 10}))
    assert out == [19, 11, 14]
    assert list(map_shards(_square, [], cfg=EngineConfig(workers=4))) == []


def test_map_shards_on_ray_keeps_shard_order():
    ray = pytest.importorskip("ray")
    shards = list(range(7))   # more than the 2 x workers in flight
    out = list(map_shards(_square, shards, cfg=EngineConfig(workers=2, object_store_mb=100), shared={"offset": 1}))
    assert out == [s * s + 1 for s in shards]
    assert not ray.is_initialized()            # started here, so shut down here


def test_ledger_counts_per_shard_and_checks_the_totals(tmp_path):
    sink = StageSink(tmp_path / "out")
    ledger = ShardLedger(sink)
    with ledger.shard(0):
        sink.count_read()
        sink.keep({"id": "a"})
        sink.count_read()
        sink.reject({"reason": "bad_json", "detail": "", "locator": "x"})
    with ledger.shard(1, source="medline"):
        sink.count_read()
        sink.keep({"id": "b"})
    assert ledger.rows() == [{"shard": 0, "read": 2, "kept": 1, "rejected": 1},
                             {"shard": 1, "source": "medline", "read": 1, "kept": 1, "rejected": 0}]
    with pytest.raises(RuntimeError, match="shard 0"):
        check_shard_accounting([{"shard": 0, "read": 2, "kept": 1, "rejected": 0}], 2, 1, 0)
    with pytest.raises(RuntimeError, match="do not sum"):
        check_shard_accounting([{"shard": 0, "read": 1, "kept": 1, "rejected": 0}], 2, 2, 0)


def test_engine_section_and_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("engine: {workers: 3, shard_records: 100}\nprofiles:\n  tiny:\n    engine: {workers: 1}\n")
    rest, own = split_section_overrides(["profile=tiny", "engine.shard_records=7", "llm.model=x", "in_dir=a"],
                                        "engine")
    assert rest == ["profile=tiny", "llm.model=x", "in_dir=a"] and own == ["profile=tiny", "shard_records=7"]
    cfg, profile = load_stage_config("engine", EngineConfig, own, params)
    assert (profile, cfg.workers, cfg.shard_records, cfg.address) == ("tiny", 1, 7, None)
    cfg, _ = load_stage_config("engine", EngineConfig, ["address=ray://head:10001"], params)
    assert (cfg.workers, cfg.address) == (3, "ray://head:10001")
    with pytest.raises(ConfigError, match="worker"):
        load_stage_config("engine", EngineConfig, ["worker=2"], params)
    with pytest.raises(ConfigError, match="workers"):
        load_stage_config("engine", EngineConfig, ["workers=0"], params)
