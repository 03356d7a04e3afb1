import json

import pytest

from tasks.common.io import PathEscapeError, StageSink, atomic_output_dir, iter_jsonl, iter_records, safe_join
from tasks.common.records import make_record, rejection


def test_safe_join_refuses_escapes(tmp_path):
    assert safe_join(tmp_path, "a/b.jpg") == tmp_path.resolve() / "a/b.jpg"
    for bad in ("../../etc/passwd", "/etc/passwd", "a/../../x", "", "a\x00b"):
        with pytest.raises(PathEscapeError):
            safe_join(tmp_path, bad)
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link").symlink_to("/etc")
    with pytest.raises(PathEscapeError):
        safe_join(tmp_path, "inside/link/passwd")


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(final) as d:
            (d / "half.jsonl").write_text("x")
            raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_output_dir(final) as d:
        (d / "ok").write_text("1")
    assert (final / "ok").read_text() == "1"


def test_iter_jsonl_quarantines_bad_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    good = make_record("s", 1, "text")
    p.write_bytes(json.dumps(good).encode() + b"\n{bad\n\xff\xfe\n\n" + json.dumps({"id": "x"}).encode() + b"\n")
    items = list(iter_records([p]))
    assert items[0] == (good, None)
    assert [rej["reason"] for _, rej in items[1:]] == ["bad_json", "invalid_utf8", "missing_field"]
    assert items[1][1]["locator"].endswith("x.jsonl:2")
    assert len(list(iter_jsonl(p))) == 4  # blank lines carry no record


def test_stage_sink_accounting(tmp_path):
    sink = StageSink(tmp_path, shard_size=2)
    for i in range(5):
        sink.count_read()
        if i % 2:
            sink.reject(rejection("odd", str(i), record=make_record("s", i, "t")))
        else:
            sink.keep_as([make_record("s", i, "a"), make_record("s", i, "b")])
    summary = sink.close()
    assert summary == {"read": 5, "kept": 3, "rejected": 2, "records_written": 6,
                       "rejected_by_reason": {"odd": 2}}
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["part-00000.jsonl", "part-00001.jsonl",
                                                                     "part-00002.jsonl"]
    broken = StageSink(tmp_path / "b")
    broken.count_read(2)
    broken.keep(make_record("s", 0, "t"))
    with pytest.raises(RuntimeError, match="accounting broken"):
        broken.close()


def test_relative_paths_cover_a_data_root_given_relative_to_the_project(tmp_path, monkeypatch):
    """A data root configured as `../data` reaches outputs both as `<root>/../data/...` (joined) and as
    `/.../data/...` (resolved); either way it is written `${data_root}/...`, and the project root goes."""
    from tasks.common.io import path_prefixes, relative_paths

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("MEDX_PROJECT_ROOT", str(project))
    prefixes = path_prefixes("../data")
    obj = {"a": f"{project}/../data/x.xml#3", "b": [f"{tmp_path}/data/y.json", f"{project}/data/out/z.jsonl:2"],
           "c": 7}
    assert relative_paths(obj, prefixes) == {"a": "${data_root}/x.xml#3",
                                             "b": ["${data_root}/y.json", "data/out/z.jsonl:2"], "c": 7}


def test_atomic_output_dir_sweeps_what_a_killed_attempt_left(tmp_path):
    final = tmp_path / "stage"
    leftover = tmp_path / ".stage.tmp-killed1"          # a SIGKILLed attempt could not remove it
    (leftover / "kept").mkdir(parents=True)
    other = tmp_path / ".stage2.tmp-running"             # another stage's folder is not this one's
    other.mkdir()
    with atomic_output_dir(final) as d:
        (d / "summary.json").write_text("{}")
    assert not leftover.exists() and other.is_dir()
    assert (final / "summary.json").read_text() == "{}"
