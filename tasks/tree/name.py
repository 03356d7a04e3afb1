"""Category naming, LLM path: ask the endpoint to name each core category from its members.

The local namer (tree_build.name_locally: the most central member) runs first and stays as the
fallback. Replies go through the project's one parse/repair loop (`tasks.llm.ask.ask_parsed`, all
prompts as one batch: bounded concurrency, cached): a reply that is empty, has no `<Name>` tag, is too
long or contains "." (paths are dot-joined) gets one repair turn; what the repair does not fix, and a
name that collides with a sibling's, keeps the local name, and the case is recorded in `failures` with
the raw replies.
"""

from __future__ import annotations

import numpy as np

from tasks.tree.build import ROOT_ID, _clean_name, central_members
from tasks.tree.model import CATEGORY, Tree, norm_name

SYSTEM = "You are a medical taxonomy expert. You answer only in the requested format."
PROMPT = ("Below are medical entities that form one category of a medical entity tree"
          "{parent}. Give the category a short, specific name (1 to 4 words) that covers all of them.\n"
          "Output format: <Name>category name</Name>\n\nEntities:\n{members}")
REPAIR = ("That reply could not be used ({problem}). Answer again with only <Name>category name</Name>: "
          "a short, specific name of 1 to 4 words, without '.'.")
MAX_NAME_CHARS = 60


def parse_name(reply: str) -> str:
    from tasks.llm.parsing import ParseError, extract_tag
    name = " ".join(extract_tag(reply, "Name").split())
    if len(name) > MAX_NAME_CHARS:
        raise ParseError(f"name longer than {MAX_NAME_CHARS} chars", reply)
    if "." in name:
        raise ParseError("name contains '.'", reply)
    return name


def _parse(reply: str) -> tuple[str, str]:
    """(cleaned name, the reply it came from); ParseError when there is no usable name."""
    from tasks.llm.parsing import ParseError
    name = _clean_name(parse_name(reply))
    if not name:
        raise ParseError("empty name", reply)
    return name, reply


class LLMNamer:
    def __init__(self, client, max_members: int = 8):
        self.client = client
        self.max_members = max_members
        self.failures: list[dict] = []
        self.stats = {"asked": 0, "named": 0, "failed": 0}

    def name(self, tree: Tree, emb: dict[str, np.ndarray], x: np.ndarray,
             entities_by_norm: dict[str, int], fixed: set[str]) -> None:
        from tasks.llm.ask import ask_parsed

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
        answers = ask_parsed(self.client, batch, _parse, REPAIR) if batch else []
        for n, texts, a in zip(nodes, members, answers):
            self.stats["asked"] += 1
            if a.ok:
                name, reply = a.value
                siblings = {norm_name(tree.nodes[s].name) for s in tree.category_children(n.parent)
                            if s != n.id}
                if norm_name(name) not in siblings:
                    n.name = name
                    self.stats["named"] += 1
                    continue
                failure = {"error": f"name {name!r} already names a sibling", "raw": reply}
            else:
                failure = {"error": a.failure["detail"], "raw": a.failure["raw"],
                           "raw_repair": a.failure.get("raw_repair")}
            self.stats["failed"] += 1
            self.failures.append({"node": n.id, "local_name": n.name, "members": texts, **failure})
