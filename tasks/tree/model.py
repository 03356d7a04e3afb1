"""The Medical Entity Tree data model and the `tree.json` loader/validator (paper §3.2).

`tree.json` is written by the `entity_tree` stage and read by `entity_map` (and anything else that
needs the taxonomy), so the contract lives here, in one place:

    {"nodes": [{"id", "name", "parent", "tier", "kind", "members", "frequency", "core"}, ...],
     "params": {...}}

- `kind: "category"` nodes form the taxonomy: the root (tier 0, `parent: null`), optional entity-type
  nodes (tier 1) and the K-Means clusters below them. A category's `members` are the norms of its
  direct entity children (sorted), its `frequency` the summed entity counts of its whole subtree.
- `kind: "entity"` nodes are the leaves, one per entity norm: `members == [norm]`, `name` the surface
  form, `frequency` the entity's corpus count, `core: true` for the entities the core tree was
  clustered from (Stage 2) and `false` for those attached later (Stage 3). An entity is a node, as in
  the paper's `<InsertionPath>Node1.Node2.InsertedNode</InsertionPath>`.
- At most five tiers: tier 0 (root) .. tier 4. Category names are unique among siblings and contain
  no "." because insertion paths are dot-joined category names.

`load_tree(path)` / `validate_tree(obj)` return a `Tree` or raise `TreeError` naming every problem
found (cycles, missing parents, duplicate ids, tiers beyond the limit, inconsistent members, ...).
A bad tree must stop a downstream stage with a clear message, never half-map a corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

MAX_TIERS = 5            # tiers 0..4; the paper's "rigorous five-tier taxonomy"
CATEGORY, ENTITY = "category", "entity"
KINDS = (CATEGORY, ENTITY)
ROOT_ID = "c"
MAX_ERRORS_SHOWN = 20


class TreeError(ValueError):
    """An invalid tree; `errors` lists every problem found."""

    def __init__(self, errors: list[str], source: str = "tree"):
        self.errors = list(errors)
        shown = "\n  - ".join(self.errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(self.errors) - MAX_ERRORS_SHOWN} more" \
            if len(self.errors) > MAX_ERRORS_SHOWN else ""
        super().__init__(f"{source}: invalid entity tree ({len(self.errors)} problem(s)):\n  - {shown}{more}")


@dataclasses.dataclass
class Node:
    id: str
    name: str
    parent: str | None
    tier: int
    kind: str = CATEGORY
    members: list[str] = dataclasses.field(default_factory=list)
    frequency: int = 0
    core: bool = True

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "parent": (str, type(None)), "tier": (int,), "kind": (str,),
    "members": (list,), "frequency": (int,), "core": (bool,)}


def norm_name(name: str) -> str:
    """How node names are compared when resolving a path: casefolded, whitespace collapsed."""
    return " ".join(str(name).casefold().split())


class Tree:
    """An in-memory entity tree: nodes by id, ordered children, path helpers.

    Build one with `Tree(nodes)` (no checks; used while constructing) or `validate_tree(obj)`.
    """

    def __init__(self, nodes: list[Node] | None = None, params: dict | None = None):
        self.nodes: dict[str, Node] = {}
        self.children: dict[str, list[str]] = {}
        self.params: dict = dict(params or {})
        for n in nodes or []:
            self.add(n)

    # -- construction ----------------------------------------------------------------------
    def add(self, node: Node) -> Node:
        if node.id in self.nodes:
            raise TreeError([f"duplicate node id {node.id!r}"])
        self.nodes[node.id] = node
        self.children.setdefault(node.id, [])
        if node.parent is not None:
            self.children.setdefault(node.parent, []).append(node.id)
        return node

    def copy(self) -> "Tree":
        return Tree([dataclasses.replace(n, members=list(n.members)) for n in self.iter_preorder()],
                    self.params)

    # -- queries ---------------------------------------------------------------------------
    @property
    def root(self) -> Node:
        roots = [n for n in self.nodes.values() if n.parent is None]
        if len(roots) != 1:
            raise TreeError([f"expected exactly one root, found {len(roots)}"])
        return roots[0]

    def category_children(self, node_id: str) -> list[str]:
        return [c for c in self.children.get(node_id, []) if self.nodes[c].kind == CATEGORY]

    def entity_children(self, node_id: str) -> list[str]:
        return [c for c in self.children.get(node_id, []) if self.nodes[c].kind == ENTITY]

    def ancestors(self, node_id: str) -> list[str]:
        """Ids from the root down to (excluding) `node_id`."""
        out = []
        p = self.nodes[node_id].parent
        while p is not None:
            out.append(p)
            p = self.nodes[p].parent
        return out[::-1]

    def path_names(self, node_id: str, include_root: bool = False) -> list[str]:
        ids = [*self.ancestors(node_id), node_id]
        if not include_root:
            ids = ids[1:]
        return [self.nodes[i].name for i in ids]

    def path(self, node_id: str) -> str:
        """Dot-joined names below the root, e.g. `Disease.hypertension.hypotension`."""
        return ".".join(self.path_names(node_id))

    def resolve_names(self, names: list[str]) -> str | None:
        """The category reached by walking `names` down from the root (root name optional)."""
        parts = [norm_name(n) for n in names]
        node = self.root.id
        if parts and parts[0] == norm_name(self.nodes[node].name):
            parts = parts[1:]
        for part in parts:
            nxt = [c for c in self.category_children(node) if norm_name(self.nodes[c].name) == part]
            if not nxt:
                return None
            node = nxt[0]
        return node

    def entity_index(self) -> dict[str, str]:
        """norm -> entity node id."""
        return {n.members[0]: n.id for n in self.nodes.values() if n.kind == ENTITY}

    def iter_preorder(self) -> Iterator[Node]:
        """Root first; children: categories by (-frequency, name, id), then entities likewise."""
        if not self.nodes:
            return
        stack = [self.root.id]
        while stack:
            nid = stack.pop()
            yield self.nodes[nid]
            stack.extend(reversed(self.sorted_children(nid)))

    def sorted_children(self, node_id: str) -> list[str]:
        def key(c):
            n = self.nodes[c]
            return (n.kind != CATEGORY, -n.frequency, n.name, n.id)
        return sorted(self.children.get(node_id, []), key=key)

    def tiers(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for n in self.nodes.values():
            out[n.tier] = out.get(n.tier, 0) + 1
        return dict(sorted(out.items()))

    # -- maintenance -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute category members (sorted direct entity norms) and subtree frequencies."""
        order = list(self.iter_preorder())
        for n in reversed(order):
            if n.kind == CATEGORY:
                n.members = sorted(self.nodes[c].members[0] for c in self.entity_children(n.id))
                n.frequency = sum(self.nodes[c].frequency for c in self.children.get(n.id, []))

    def to_json(self) -> dict:
        return {"nodes": [n.to_json() for n in self.iter_preorder()], "params": self.params}

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON (proves the frozen core did not change)."""
        blob = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def validate_tree(obj: Any, *, max_tiers: int = MAX_TIERS, source: str = "tree") -> Tree:
    """Check a parsed tree.json object; return the `Tree` or raise `TreeError` listing every problem.

    Checks: shape and field types; duplicate ids; exactly one root at tier 0; every parent exists;
    no cycles; tier == parent tier + 1 and tier < max_tiers; entity nodes are leaves with one member
    and each norm is one entity node; a category's members equal its entity children's norms;
    category names are non-empty, dot-free and unique among siblings.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("nodes"), list):
        raise TreeError(["top level must be an object with a 'nodes' list"], source)
    if "params" in obj and not isinstance(obj["params"], dict):
        raise TreeError(["'params' must be an object"], source)
    errors: list[str] = []
    nodes: dict[str, Node] = {}
    for i, raw in enumerate(obj["nodes"]):
        where = f"nodes[{i}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: not an object")
            continue
        bad = False
        for name, types in _FIELD_TYPES.items():
            v = raw.get(name, ...)
            if v is ...:
                errors.append(f"{where}: missing field {name!r}")
                bad = True
            elif not isinstance(v, types) or (name in ("tier", "frequency") and isinstance(v, bool)):
                errors.append(f"{where}: field {name!r} has type {type(v).__name__}")
                bad = True
        if bad:
            continue
        if not all(isinstance(m, str) for m in raw["members"]):
            errors.append(f"{where}: members must be strings")
            continue
        node = Node(**{k: raw[k] for k in _FIELD_TYPES})
        if not node.id:
            errors.append(f"{where}: empty id")
            continue
        if node.id in nodes:
            errors.append(f"duplicate node id {node.id!r}")
            continue
        if node.kind not in KINDS:
            errors.append(f"node {node.id!r}: kind {node.kind!r} is not one of {KINDS}")
        if not node.name.strip():
            errors.append(f"node {node.id!r}: empty name")
        if node.frequency < 0:
            errors.append(f"node {node.id!r}: negative frequency")
        nodes[node.id] = node
    if errors:
        raise TreeError(errors, source)

    roots = [n for n in nodes.values() if n.parent is None]
    if len(roots) != 1:
        errors.append(f"expected exactly one root (parent null), found {len(roots)}: "
                      f"{sorted(n.id for n in roots)[:5]}")
    for n in nodes.values():
        if n.parent is not None and n.parent not in nodes:
            errors.append(f"node {n.id!r}: parent {n.parent!r} does not exist")
        if n.parent == n.id:
            errors.append(f"node {n.id!r} is its own parent")
    # cycles: follow parent pointers; a walk that revisits a node on its own path is a cycle
    state: dict[str, int] = {}   # 1 = on the current walk, 2 = known to reach a root
    reported: set[frozenset] = set()
    for start in nodes:
        walk: list[str] = []
        nid: str | None = start
        while nid is not None and nid in nodes and state.get(nid) != 2:
            if state.get(nid) == 1:
                cyc = walk[walk.index(nid):]
                key = frozenset(cyc)
                if key not in reported:
                    reported.add(key)
                    errors.append(f"cycle in parent links: {' -> '.join([*cyc, nid])}")
                break
            state[nid] = 1
            walk.append(nid)
            nid = nodes[nid].parent
        for w in walk:
            state[w] = 2
    if errors:
        raise TreeError(errors, source)

    tree = Tree(list(nodes.values()), obj.get("params") or {})
    for n in nodes.values():
        if n.parent is None:
            if n.tier != 0:
                errors.append(f"root {n.id!r} has tier {n.tier}, expected 0")
            if n.kind != CATEGORY:
                errors.append(f"root {n.id!r} must be a category")
            continue
        if n.tier >= max_tiers:
            errors.append(f"node {n.id!r} is at tier {n.tier}: more than {max_tiers} tiers "
                          f"(tiers 0..{max_tiers - 1})")
        p = nodes[n.parent]
        if n.tier != p.tier + 1:
            errors.append(f"node {n.id!r}: tier {n.tier} but parent {p.id!r} has tier {p.tier}")
        if p.kind == ENTITY:
            errors.append(f"node {n.id!r}: parent {p.id!r} is an entity (entities are leaves)")
    seen_norms: dict[str, str] = {}
    for n in nodes.values():
        if n.kind == ENTITY:
            if len(n.members) != 1 or not n.members[0].strip():
                errors.append(f"entity node {n.id!r}: members must be exactly [norm]")
                continue
            norm = n.members[0]
            if norm in seen_norms:
                errors.append(f"entity {norm!r} appears more than once ({seen_norms[norm]!r}, {n.id!r})")
            seen_norms[norm] = n.id
        else:
            if "." in n.name:
                errors.append(f"category {n.id!r}: name {n.name!r} contains '.' (paths are dot-joined)")
            expected = sorted(nodes[c].members[0] for c in tree.entity_children(n.id)
                              if nodes[c].members)
            if sorted(n.members) != expected:
                errors.append(f"category {n.id!r}: members {n.members[:5]} != its entity children's "
                              f"norms {expected[:5]}")
            names: dict[str, str] = {}
            for c in tree.category_children(n.id):
                key = norm_name(nodes[c].name)
                if key in names:
                    errors.append(f"category {n.id!r}: children {names[key]!r} and {c!r} share the "
                                  f"name {nodes[c].name!r} (ambiguous path)")
                names[key] = c
    if errors:
        raise TreeError(errors, source)
    return tree


def load_tree(path: str | os.PathLike, *, max_tiers: int = MAX_TIERS) -> Tree:
    """Read and validate a tree.json; raise TreeError (bad tree) or FileNotFoundError."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TreeError([f"not valid JSON: {e.msg} at line {e.lineno} col {e.colno}"], str(path)) from None
    except UnicodeDecodeError as e:
        raise TreeError([f"not valid UTF-8: {e}"], str(path)) from None
    return validate_tree(obj, max_tiers=max_tiers, source=str(path))
