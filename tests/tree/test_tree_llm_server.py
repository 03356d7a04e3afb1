"""LLM attachment against the real llama.cpp + SmolLM2-135M server on 2 entities. The model is too
small for the paper's Stage 3 prompt (ARCHITECTURE.md "LLM roles"), so this asserts the accounting -- each
entity attached under a real frozen-core path or unclassified with its reason and raw replies, at most
one repair turn each, a re-run served from the cache -- never the model's judgment."""

from __future__ import annotations

import numpy as np
import pytest
from local_server import real_local_server

from tasks.tree.attach import LLMAttacher, attach_all
from tasks.tree.build import FrozenCore
from tasks.tree.conflicts import EvidenceIndex, LocalResolver
from tasks.tree.embed import Entity
from tasks.tree.model import ENTITY, Node, Tree, validate_tree


def frozen_core() -> FrozenCore:
    t = Tree([Node("c", "Medical Entity Tree", None, 0), Node("c1", "Disease", "c", 1),
              Node("c1.1", "neurological disorders", "c1", 2), Node("c1.2", "digestive disorders", "c1", 2)])
    for norm, parent in [("epilepsy", "c1.1"), ("stroke", "c1.1"), ("gastritis", "c1.2"), ("colitis", "c1.2")]:
        t.add(Node(f"e:{norm}", norm, parent, 3, ENTITY, [norm], 5, True))
    t.refresh()
    ids = ("c", "c1", "c1.1", "c1.2")
    m = np.eye(4, dtype=np.float32)
    m.setflags(write=False)
    return FrozenCore(t, ids, m, {i: j for j, i in enumerate(ids)}, {"Disease": "c1"}, t.fingerprint())


@pytest.mark.llm_server
def test_llm_attachment_on_local_server_accounts_for_every_entity(tmp_path):
    from tasks.llm.client import LLMClient

    entities = [Entity(n, n, "Disease", 1, 1, [{"text": n, "type": "Disease", "count": 1}])
                for n in ("migraine", "duodenal ulcer")]
    core = frozen_core()
    with real_local_server(tmp_path, max_tokens=64) as live, LLMClient(live) as client:
        working = core.tree.copy()
        att = LLMAttacher(client, core, tree_max_chars=500)
        res = attach_all(entities, None, core, working, att, LocalResolver(core.tree, EvidenceIndex([])),
                         batch_size=2, max_tiers=5)
        first = client.stats
        again = LLMAttacher(client, core, tree_max_chars=500).decide_batch(entities)
        assert client.stats["requests"] == first["requests"]            # re-run: all cache hits
        assert [d.reason for d in again] == [u["reason"] for u in res.unclassified] or res.attachments

    s = att.stats
    print("SmolLM2 attach stats:", s, "unclassified:", [(u["entity"], u["reason"]) for u in res.unclassified],
          "replies:", [u.get("raw_replies") for u in res.unclassified])
    assert len(res.attachments) + len(res.unclassified) == 2
    assert s["asked"] == 2 and s["parsed_first"] + s["parsed_after_repair"] + s["unclassifiable"] \
        + s["failed"] == 2
    assert first["requests"] == 2 + s["repairs"] and s["repairs"] <= 2 and first["failures"] == 0
    for a in res.attachments:
        assert core.tree.resolve_names(a["path"].split(".")) == a["node_id"]
    for u in res.unclassified:
        assert u["reason"].startswith("llm_") and u["method"] == "llm"
        assert u["reason"] == "llm_unclassifiable" or len(u["raw_replies"]) == 2   # repaired once
    working.refresh()
    validate_tree(working.to_json())
