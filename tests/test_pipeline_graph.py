from tasks.pipeline import read_stage_graph


def test_graph_from_deps_and_outs(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  a: {cmd: x, outs: [data/a]}\n"
        "  b: {cmd: x, deps: [data/a/kept, code.py], outs: [data/b]}\n"
        "  c: {cmd: x, deps: [data/a, data/b], outs: [{data/c: {cache: true}}]}\n"
        "  d: {cmd: x, deps: [data/ab]}\n")
    assert read_stage_graph(tmp_path / "dvc.yaml") == {"a": [], "b": ["a"], "c": ["a", "b"], "d": []}
