"""Category naming, LLM path: ask the endpoint to name each core category from its members.

The local namer (tree_build.name_locally: the most central member) runs first and stays as the
fallback: a reply that is empty, has no `<Name>` tag, is too long, contains "." (paths are dot-joined)
or collides with a sibling's name keeps the local name, and the case is recorded in `failures` with
the raw reply. Prompts go out as one `complete_many` batch (bounded concurrency, cached).
"""

from __future__ import annotations

import numpy as np

from tasks.tree.build import ROOT_ID, _clean_name, central_members
from tasks.tree.model import CATEGORY, Tree, norm_name

SYSTEM = "You are a medical taxonomy expert. You answer only in the requested format."
PROMPT = ("Below are medical entities that form one category of a medical entity tree"
          "{parent}. Give the category a short, specific name (1 to 4 words) that covers all of them.\n"
          "Output format: <Name>category name</Name>\n\nEntities:\n{members}")
MAX_NAME_CHARS = 60


def parse_name(reply: str) -> str:
    from tasks.llm.parsing import ParseError, extract_tag
    name = " ".join(extract_tag(reply, "Name").split())
    if len(name) > MAX_NAME_CHARS:
        raise ParseError(f"name longer than {MAX_NAME_CHARS} chars", reply)
    if "." in name:
        raise ParseError("name contains '.'", reply)
    return name


class LLMNamer:
    def __init__(self, client, max_members: int = 8):
        self.client = client
        self.max_members = max_members
        self.failures: list[dict] = []
        self.stats = {"asked": 0, "named": 0, "failed": 0}

    def name(self, tree: Tree, emb: dict[str, np.ndarray], x: np.ndarray,
             entities_by_norm: dict[str, int], fixed: set[str]) -> None:
        from tasks.llm.client import LLMError
        from tasks.llm.parsing import ParseError

        nodes = [n for n in tree.iter_preorder() if n.kind == CATEGORY and n.id not in fixed]
        batch, members = [], []
        for n in nodes:
            ms = central_members(tree, n.id, emb[n.id], x, entities_by_norm, self.max_members)
            texts = [tree.nodes[f"e:{m}"].name for m in ms]
            members.append(texts)
            parent = tree.nodes[n.parent] if n.parent else None
            hint = f" under the category \"{parent.name}\"" if parent and parent.id != ROOT_ID else ""
            batch.append([{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": PROMPT.format(
                              parent=hint, members="\n".join(f"- {t}" for t in texts))}])
        replies = self.client.complete_many(batch, return_exceptions=True) if batch else []
        for n, texts, reply in zip(nodes, members, replies):
            self.stats["asked"] += 1
            siblings = {norm_name(tree.nodes[s].name) for s in tree.category_children(n.parent)
                        if s != n.id}
            try:
                if isinstance(reply, LLMError):
                    raise reply
                name = _clean_name(parse_name(reply))
                if not name:
                    raise ParseError("empty name", reply)
                if norm_name(name) in siblings:
                    raise ParseError(f"name {name!r} already names a sibling", reply)
            except (ParseError, LLMError) as e:
                self.stats["failed"] += 1
                self.failures.append({"node": n.id, "local_name": n.name, "members": texts,
                                      "error": str(e)[:300],
                                      "raw": reply if isinstance(reply, str) else None})
                continue
            n.name = name
            self.stats["named"] += 1
