from tasks.pipeline import expand_stages, read_stage_graph, task_id


def test_graph_from_deps_and_outs(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  a: {cmd: x, outs: [data/a]}\n"
        "  b: {cmd: x, deps: [data/a/kept, code.py], outs: [data/b]}\n"
        "  c: {cmd: x, deps: [data/a, data/b], outs: [{data/c: {cache: true}}]}\n"
        "  d: {cmd: x, deps: [data/ab]}\n")
    assert read_stage_graph(tmp_path / "dvc.yaml") == {"a": [], "b": ["a"], "c": ["a", "b"], "d": []}


def test_foreach_stages_expand_like_dvc(tmp_path):
    """`foreach` over a params.yaml mapping gives one stage per key, named `<stage>@<key>`, with
    `${key}` / `${item.*}` substituted; a stage reading the parent directory waits for all of them."""
    (tmp_path / "params.yaml").write_text(
        "root: ../data\n"
        "ckpts:\n  base: {path: data/base}\n  cpt: {path: data/cpt}\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  base: {cmd: x, deps: ['${root}/raw'], outs: [data/base]}\n"
        "  cpt: {cmd: x, deps: [data/base], outs: [data/cpt]}\n"
        "  eval:\n"
        "    foreach: ${ckpts}\n"
        "    do: {cmd: 'e ${key} ${item.path}', deps: ['${item.path}'], outs: ['data/eval/${key}']}\n"
        "  report: {cmd: x, deps: [data/eval], outs: [data/report]}\n")
    stages = expand_stages(tmp_path / "dvc.yaml")
    assert stages["eval@cpt"]["cmd"] == "e cpt data/cpt" and stages["base"]["deps"] == ["../data/raw"]
    assert read_stage_graph(tmp_path / "dvc.yaml") == {
        "base": [], "cpt": ["base"], "eval@base": ["base"], "eval@cpt": ["cpt"],
        "report": ["eval@base", "eval@cpt"]}
    assert task_id("eval@cpt") == "eval.cpt"


def test_the_project_graph_matches_dvc():
    """The graph the DAG is built from names exactly the stages `dvc stage list` does."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    dvc = str(Path(sys.executable).parent / "dvc")
    listed = subprocess.run([dvc, "stage", "list", "--name-only"], cwd=root, capture_output=True, text=True,
                            check=True).stdout.split()
    assert sorted(read_stage_graph(root / "dvc.yaml")) == sorted(listed)
