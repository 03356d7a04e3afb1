"""The layout rules of ARCHITECTURE.md, checked against dvc.yaml and the code:

- every dvc.yaml stage runs `python -m tasks.<its own name>`, a module on the stage contract
  (`STAGE = Stage("<name>", ...)`) that is short (the logic lives in domain packages);
- every project file a stage can import is covered by that stage's DVC deps, so DVC re-runs a
  stage exactly when code it runs changed (and only then: the deps are no coarser than needed);
- nothing cites a design document outside the repository.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.common.stage import Stage
from tasks.pipeline import expand_stages

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PROJECT_PACKAGES = ("tasks", "models", "eval")
MAX_STAGE_CODE_LINES = 70   # code lines of a stage module, docstring and comments aside


def stage_module(name: str) -> str:
    return f"tasks.{name}"


def code_lines(path: Path) -> int:
    tree = ast.parse(path.read_text())
    doc_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                doc_lines.update(range(first.lineno, first.end_lineno + 1))
    lines = path.read_text().splitlines()
    return sum(1 for i, line in enumerate(lines, 1)
               if i not in doc_lines and line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("name", sorted(DVC))
def test_every_stage_runs_its_own_module_on_the_contract(name):
    spec = DVC[name].get("do", DVC[name])
    assert re.match(rf"python -m {re.escape(stage_module(name))}(\s|$)", spec["cmd"]), spec["cmd"]
    module = importlib.import_module(stage_module(name))
    stage = getattr(module, "STAGE", None)
    assert isinstance(stage, Stage), f"{module.__name__} declares no STAGE"
    assert stage.name == name
    path = Path(module.__file__)
    assert path == ROOT / "tasks" / f"{name}.py"
    assert module.__doc__ and "Run:" in module.__doc__, f"{path.name}: the docstring says how to run it"
    assert code_lines(path) <= MAX_STAGE_CODE_LINES, f"{path.name} is {code_lines(path)} code lines"


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return None
    base = ROOT.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    """Project modules `path` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if _module_file(m) is not None}


def _docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def import_closure(module: str, skip_llm: bool) -> set[Path]:
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = _module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        # a package's modules import through its __init__ (one with code runs with them)
        for parent in path.relative_to(ROOT).parents:
            init = ROOT / parent / "__init__.py"
            if str(parent) != "." and init.is_file() and init not in seen and not _docstring_only(init):
                todo.append(".".join(parent.parts))
        for imported in _imports(path):
            # the runner opens an LLM client only for a stage with an LLM role
            if skip_llm and path.parts[-2] == "common" and imported.startswith("tasks.llm"):
                continue
            todo.append(imported)
    return seen


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("name", sorted(expand_stages(ROOT / "dvc.yaml")))
def test_stage_deps_cover_the_code_it_imports(name):
    spec = expand_stages(ROOT / "dvc.yaml")[name]
    base = name.split("@")[0]
    stage = importlib.import_module(stage_module(base)).STAGE
    has_llm_role = stage.uses_llm is not Stage.__dataclass_fields__["uses_llm"].default
    code = {p for p in import_closure(stage_module(base), skip_llm=not has_llm_role)
            if not (p.name == "__init__.py" and _docstring_only(p))}
    deps = [d for d in spec["deps"] if not d.startswith(("data/", "${", "/", ".."))]
    missing = sorted(str(p.relative_to(ROOT)) for p in code if not _covered(p, deps))
    assert not missing, f"{name}: imports code its DVC deps do not list: {missing}"


def test_editing_a_kg_module_touches_kg_and_not_the_entity_stages():
    """Which stages list tasks/knowledge_graph/relations.py among their deps (what `dvc status`
    reports after an edit; tests/test_pipeline_e2e.py checks it with DVC itself)."""
    touched = {name for name, spec in expand_stages(ROOT / "dvc.yaml").items()
               if _covered(ROOT / "tasks/knowledge_graph/relations.py",
                           [d for d in spec["deps"] if not d.startswith("$")])}
    assert touched == {"kg"}


def test_nothing_cites_a_design_file_outside_the_repository():
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    offenders = [f for f in files if f.endswith((".py", ".md", ".yaml", ".yml", ".toml", ".cfg"))
                 and (ROOT / f).is_file() and "DESIGN" ".md" in (ROOT / f).read_text(errors="replace")]
    assert not offenders, offenders
    assert (ROOT / "ARCHITECTURE.md").is_file()
