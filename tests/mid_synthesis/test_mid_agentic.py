"""Agentic mid-training data: the BM25 search tool, ReAct search trajectories, ZOOM/ROTATE and think-with-image
trajectories. Small hand-built inputs with hand-computed expectations, plus quick reads of the real corpus, KG
and rendered OCR reports."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tasks.corpus.images import ImageStore
from tasks.cpt_synthesis.ocr_render import OCRRenderParams
from tasks.cpt_synthesis.ocr_targets import OCRParams, synthesize_ocr
from tasks.llm.client import LLMError
from tasks.mid_synthesis.agentic_image import (
    AgenticImageParams,
    _candidates,
    agentic_image,
    ink_bands,
    inside_share,
    load_ocr_samples,
    pixel_vote,
    table_rows,
    token_recall,
)
from tasks.mid_synthesis.agentic_search import (
    AgenticSearchParams,
    LLMSearchPolicy,
    LocalSearchPolicy,
    agentic_search,
    mention,
    norm,
    replay_tool_calls,
    resolve_chain,
)
from tasks.mid_synthesis.experts import Reply
from tasks.mid_synthesis.image_tools import (
    ImageToolParams,
    ImageTools,
    ToolError,
    crop_box,
    rotate_image,
    rotate_points,
)
from tasks.mid_synthesis.samples import validate_sample
from tasks.mid_synthesis.search_tool import (
    SEARCH_SCHEMA,
    BM25Index,
    Passage,
    SearchParams,
    SearchTool,
    passages_of,
    read_corpus,
)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data/quality/kept"
EDGES = ROOT / "data/kg/edges.jsonl"
needs_corpus = pytest.mark.skipif(not (CORPUS / "part-00000.jsonl").exists(), reason="needs the quality DVC output")
needs_kg = pytest.mark.skipif(not EDGES.exists() or not (CORPUS / "part-00000.jsonl").exists(),
                              reason="needs the kg and quality DVC outputs")


def _tool(texts: list[str], **kw) -> SearchTool:
    return SearchTool.from_docs([(f"d{i}", t) for i, t in enumerate(texts)], SearchParams(**kw))


# ----------------------------------------------------------------------------- BM25
def test_bm25_scores_match_hand_computation():
    idx = BM25Index(["aspirin treats fever", "fever fever cough", "insulin treats diabetes"], k1=1.2, b=0.75)
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))          # "fever": N = 3, df = 2
    s = idx.scores("fever")
    # all documents have 3 tokens = avgdl, so the length norm is 1: tf * 2.2 / (tf + 1.2)
    assert s[0] == pytest.approx(idf * 1 * 2.2 / (1 + 1.2), rel=1e-5)
    assert s[1] == pytest.approx(idf * 2 * 2.2 / (2 + 1.2), rel=1e-5)
    assert s[2] == 0
    assert idx.top("fever", 5) == [(1, pytest.approx(round(s[1], 4))), (0, pytest.approx(round(s[0], 4)))]
    assert idx.top("the of and", 5) == []                   # stopwords only: no hit, no crash


def test_ties_break_by_passage_order_and_k_cuts():
    tool = SearchTool([Passage(f"d{i}", f"d{i}#0", 0, 10, "heart failure edema") for i in range(6)], SearchParams())
    hits = tool.search("edema", k=4)
    assert [h["doc_id"] for h in hits] == ["d0", "d1", "d2", "d3"]
    assert len({h["score"] for h in hits}) == 1
    assert tool.search("edema", k=4) == hits                # same query, same list


def test_sentence_windows_cover_the_document_and_carry_the_title():
    text = "Title about gout. S1 one here. S2 two here. S3 three here. S4 four here. S5 five here."
    ps = passages_of("doc", text, SearchParams(window=3, stride=2, min_passage_chars=5))
    assert [p.passage_id for p in ps] == ["doc#0", "doc#1", "doc#2"]
    assert ps[0].text == "Title about gout. S1 one here. S2 two here."
    assert ps[1].text == "Title about gout.\nS2 two here. S3 three here. S4 four here."
    assert ps[2].text == "Title about gout.\nS4 four here. S5 five here."     # the tail window
    assert all(text[p.start:p.end] in p.text for p in ps)


def test_schema_and_call_render_the_real_results():
    fn = SEARCH_SCHEMA["function"]
    assert fn["name"] == "search" and fn["parameters"]["required"] == ["query"]
    assert set(fn["parameters"]["properties"]) == {"query", "k"}
    tool = _tool(["Gout is caused by uric acid crystals.", "Asthma is treated with inhalers."])
    text = tool.call({"query": "gout cause", "k": 1})
    assert text.startswith("[1] d0#0 (score ") and "uric acid" in text and "inhalers" not in text
    assert tool.call({"query": "zzzz", "k": 3}) == "No results."


@needs_corpus
def test_real_corpus_index_finds_a_document_by_its_title():
    docs = list(read_corpus(str(CORPUS), max_docs=3000))     # radiology reports, then MEDLINE, then MedQuAD
    assert len(docs) == 3000 and all(t.strip() for _, t in docs)
    tool = SearchTool.from_docs(docs, SearchParams())
    assert len(tool.doc_ids) == 3000
    for prefix in ("medline", "medquad"):
        doc_id, text = next((d, t) for d, t in docs if d.startswith(prefix))
        title = text.split("\n")[0]
        assert tool.search(title, k=3)[0]["doc_id"] == doc_id, title


# ----------------------------------------------------------------------------- agentic search
CORPUS_TOY = [
    "Gout is caused by uric acid. High levels build up in the joints.",
    "Uric acid is treated with allopurinol, which lowers its level in the blood.",
    "Asthma is a disease of the airways. It causes wheezing.",
    "Allopurinol can cause a rash in some people.",
]


def _hop(head, rel, tail, direction="forward", edge=1):
    return {"head": head, "relation": rel, "tail": tail, "direction": direction, "sentence": "", "doc_id": "d0",
            "edge_id": edge}


def _questions():
    chain = [_hop("gout", "caused_by", "uric acid", edge=1), _hop("uric acid", "treated_by", "allopurinol", edge=2)]
    return [
        {"id": "q-good", "question": "Which drug treats the substance behind a common inflammatory arthritis?",
         "answer": "Allopurinol", "hops": chain},
        {"id": "q-miss", "question": "What does asthma come from?", "answer": "pollen",
         "hops": [_hop("asthma", "caused_by", "pollen")]},
        {"id": "q-wrong-gold", "question": "What is gout caused by?", "answer": "sugar",
         "hops": [_hop("gout", "caused_by", "uric acid")]},
        {"id": "q-broken", "question": "?", "answer": "x",
         "hops": [_hop("gout", "caused_by", "uric acid"), _hop("asthma", "has_symptom", "wheezing")]},
        {"id": "q-leak", "question": "Is gout caused by uric acid?", "answer": "uric acid",
         "hops": [_hop("gout", "caused_by", "uric acid")]},
    ]


def test_local_policy_gates_every_question_and_keeps_a_replayable_trajectory():
    tool = _tool(CORPUS_TOY)
    p = AgenticSearchParams(k=2)
    out = agentic_search(_questions(), tool, LocalSearchPolicy(p), p)
    assert out.read == 5 == len(out.kept) + len(out.rejected)
    assert out.by_gate() == {"answer": {"wrong_answer": 1}, "input": {"broken_chain": 1},
                             "quality": {"answer_in_question": 1}, "retrieval": {"hop_not_retrieved": 1}}
    (s,) = out.kept
    validate_sample(s)
    assert (s["family"], s["phase"], s["tools"], s["meta"]["generator"]) == ("agentic_search", 4, [SEARCH_SCHEMA],
                                                                             "local")
    roles = [m["role"] for m in s["messages"]]
    assert roles == ["user"] + ["assistant", "tool"] * 3 + ["assistant"]
    calls = [m["tool_calls"][0]["function"] for m in s["messages"] if m.get("tool_calls")]
    # in this 4-document corpus "causes" outweighs "gout" (BM25: same idf, shorter passages), so the first
    # search misses; the policy searches again with the relation's other words instead of inventing the link
    assert [c["arguments"]["query"] for c in calls] == ["gout cause causes", "gout caused due",
                                                        "uric acid treatment treated"]
    assert "uric acid" not in s["messages"][2]["content"] and "search again" in s["messages"][3]["reasoning_content"]
    # the next entity comes from the observation: hop 2 searches the surface form read in hop 1's results
    assert "uric acid" in s["messages"][4]["content"] and "allopurinol" in s["messages"][6]["content"]
    assert s["messages"][-1]["content"] == "allopurinol" and norm(s["meta"]["answer"]) == "allopurinol"
    assert s["meta"]["evidence"] == ["d0#0", "d1#0"] and s["meta"]["searches"] == 3
    assert {"q-good", "kg-edge:1", "kg-edge:2", "d0", "d1"} <= set(s["source_ids"])
    assert replay_tool_calls(s, tool) == [True, True, True]
    bad = json.loads(json.dumps(s))
    bad["messages"][4]["content"] = bad["messages"][4]["content"].replace("uric acid", "uric salt")
    assert replay_tool_calls(bad, tool) == [True, False, True]
    miss = next(r for r in out.rejected if r["item"]["id"] == "q-miss")
    assert miss["gate"] == "retrieval" and "asthma" in miss["detail"]


def test_retrieval_miss_is_rejected_never_invented():
    tool = _tool(CORPUS_TOY)
    q = [{"id": "q", "question": "What treats gout's cause?", "answer": "colchicine",
          "hops": [_hop("gout", "caused_by", "uric acid"), _hop("uric acid", "treated_by", "colchicine")]}]
    out = agentic_search(q, tool, LocalSearchPolicy(), AgenticSearchParams())
    assert not out.kept and out.by_gate() == {"retrieval": {"hop_not_retrieved": 1}}
    assert "hop 1" in out.rejected[0]["detail"]


def test_chain_resolution_handles_backward_hops():
    steps = resolve_chain([_hop("uric acid", "caused_by", "gout"), _hop("uric acid", "treated_by", "allopurinol")])
    assert [(s.current, s.next, s.forward) for s in steps] == [("gout", "uric acid", False),
                                                               ("uric acid", "allopurinol", True)]
    one = resolve_chain([_hop("gout", "caused_by", "uric acid", direction="backward")])
    assert (one[0].current, one[0].next) == ("uric acid", "gout")
    assert mention("Symptoms include - Fever and rash.", "- fever") == "Fever"
    assert mention("feverish", "fever") is None


class FakeClient:
    """The project client's complete_many, answering by a function of the chat (an LLMError is a failure)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def complete_many(self, batch, return_exceptions=False, **params):
        self.calls += 1
        return [self.fn(chat) for chat in batch]


def _llm_reply(chat):
    user = chat[1]["content"]
    if "asthma" in user:                                  # answers from memory, never searches
        return json.dumps({"thought": "I know this.", "action": "answer", "answer": "pollen"})
    if "gibberish" in user:
        return "not json at all"
    if "fail" in user:
        return LLMError("endpoint down")
    n = user.count("\nSearch ")
    if n == 0:
        return json.dumps({"thought": "First find the cause of gout.", "action": "search", "query": "gout caused"})
    if n == 1:
        return json.dumps({"thought": "Gout is caused by uric acid; what treats it?", "action": "search",
                           "query": "uric acid treated"})
    return json.dumps({"thought": "Uric acid is treated with allopurinol.", "action": "answer",
                       "answer": "Allopurinol"})


def test_llm_policy_runs_the_real_tool_and_is_gated():
    tool = _tool(CORPUS_TOY)
    qs = [_questions()[0],
          {"id": "a", "question": "What causes asthma?", "answer": "pollen", "hops": [_hop("asthma", "caused_by", "pollen")]},
          {"id": "g", "question": "gibberish gout?", "answer": "uric acid", "hops": [_hop("gout", "caused_by", "uric acid")]},
          {"id": "f", "question": "fail gout?", "answer": "uric acid", "hops": [_hop("gout", "caused_by", "uric acid")]}]
    p = AgenticSearchParams(k=2)
    client = FakeClient(_llm_reply)
    out = agentic_search(qs, tool, LLMSearchPolicy(client, p), p)
    assert out.read == 4 == len(out.kept) + len(out.rejected)
    assert out.by_gate() == {"llm": {"request_failed": 1, "unparseable": 1}, "retrieval": {"hop_not_retrieved": 1}}
    (s,) = out.kept
    assert s["meta"]["generator"] == "llm" and s["messages"][-1]["content"] == "Allopurinol"
    assert s["meta"]["evidence"] == ["d0#0", "d1#0"] and {"d0", "d1"} <= set(s["source_ids"])
    assert s["messages"][1]["reasoning_content"] == "First find the cause of gout."
    assert replay_tool_calls(s, tool) == [True, True]


@needs_kg
@pytest.mark.parametrize("n_edges", [60])
def test_real_kg_edges_are_retrieved_from_their_corpus(n_edges):
    edges = []
    with open(EDGES, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            if e["kind"] == "medquad" and e["provenance"]["sentences"]:
                edges.append(e)
            if len(edges) >= n_edges:
                break
    want = {e["provenance"]["sentences"][0]["doc_id"] for e in edges}
    docs = []
    with open(CORPUS / "part-00000.jsonl", encoding="utf-8") as f:
        for line in f:
            if line[7:80].split('"')[0] in want:      # records start with {"id":"<doc id>"
                rec = json.loads(line)
                docs.append((rec["id"], rec["text"]))
    assert len(docs) >= len(want) * 0.9
    tool = SearchTool.from_docs(docs, SearchParams())
    qs = [{"id": f"e{e['id']}", "question": f"Which entity is linked to {e['head']} ({e['relation']})?",
           "answer": e["tail"], "hops": [{"head": e["head"], "relation": e["relation"], "tail": e["tail"],
                                          "direction": "forward", "edge_id": e["id"]}]} for e in edges]
    out = agentic_search(qs, tool, LocalSearchPolicy(), AgenticSearchParams())
    assert out.read == len(qs) == len(out.kept) + len(out.rejected)
    assert len(out.kept) >= len(qs) // 4, out.by_gate()
    for s in out.kept:
        tail = next(q for q in qs if q["id"] == s["meta"]["question_id"])["answer"]
        assert any(mention(m["content"], tail) for m in s["messages"] if m["role"] == "tool")
        assert all(replay_tool_calls(s, tool))


# ----------------------------------------------------------------------------- ZOOM / ROTATE
def _dot_image(w=120, h=80, at=(30, 20)):
    img = Image.new("RGB", (w, h), (255, 255, 255))
    ImageDraw.Draw(img).ellipse([at[0] - 3, at[1] - 3, at[0] + 3, at[1] + 3], fill=(0, 0, 0))
    return img


def _centroid(img):
    g = np.asarray(img.convert("L"), float)
    ys, xs = np.nonzero(g < 128)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("angle", [90, -90, 180, 30, -12.5])
def test_rotate_points_follow_the_pixels(angle):
    img = _dot_image()
    out = rotate_image(img, angle)
    want = rotate_points([[30.5, 20.5]], angle, img.size)[0]
    assert np.abs(_centroid(out) - want).max() < 1.0
    if angle % 90 == 0:
        assert out.size == ((80, 120) if angle % 180 else (120, 80))


def test_rotate_quarter_turn_is_counter_clockwise():
    # the top-right corner of a w x h image goes to the top-left under a counter-clockwise quarter turn
    assert rotate_points([[120, 0]], 90, (120, 80)).round(6).tolist() == [[0.0, 0.0]]
    assert rotate_points([[0, 0]], 90, (120, 80)).round(6).tolist() == [[0.0, 120.0]]


def test_zoom_crops_scales_and_stores_content_addressed(tmp_path):
    tools = ImageTools(tmp_path, tmp_path / "store", ImageToolParams(image_dir="data/mid/images"))
    img = _dot_image()
    assert crop_box([10.2, 5.7, 40.1, 30.0], img.size) == [10, 5, 41, 30]
    assert crop_box([-5, -5, 500, 500], img.size) == [0, 0, 120, 80]
    z = tools.zoom(img, [10.2, 5.7, 40.1, 30.0], 2)
    assert z.box == [10, 5, 41, 30] and z.image.size == (62, 50)
    sha = z.ref["sha256"]
    assert z.ref["path"] == f"data/mid/images/{sha[:2]}/{sha}.png"
    data = (tmp_path / "store" / sha[:2] / f"{sha}.png").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    assert tools.zoom(img, [10.2, 5.7, 40.1, 30.0], 2).ref == z.ref       # deterministic: same call, same file
    assert tools.open(z.ref["path"]).size == (62, 50)                       # outputs are read back from the store
    for bbox, scale, reason in (([50, 50, 50, 60], 2, "empty_bbox"), ([0, 0, 10, 10], 9, "bad_scale"),
                                ([0, 0, 10], 2, "bad_bbox")):
        with pytest.raises(ToolError) as e:
            tools.zoom(img, bbox, scale)
        assert e.value.reason == reason


# ----------------------------------------------------------------------------- perception experts
def _text_image(lines_y, w=400, h=60, size=20):
    img = Image.new("RGB", (w, h), (245, 244, 240))
    d = ImageDraw.Draw(img)
    from PIL import ImageFont
    font = ImageFont.load_default(size=size)
    for y in lines_y:
        d.text((10, y), "Sodium 140.4 mmol/L 137.0-147.0", font=font, fill=(20, 20, 24))
    return img


def test_pixel_expert_counts_text_lines():
    p = AgenticImageParams()
    one = pixel_vote(_text_image([20]), 24, p)
    assert one["ok"] and len(one["bands"]) == 1
    assert pixel_vote(_text_image([2, 34], h=70), 24, p)["reason"] == "not_one_text_line"
    assert pixel_vote(_text_image([20, 52], h=66), 24, p)["reason"] == "line_cut_at_edge"
    assert pixel_vote(Image.new("RGB", (400, 60), (240, 240, 240)), 24, p)["reason"] == "no_text_line"
    ruled = _text_image([20])
    ImageDraw.Draw(ruled).line([(0, 2), (400, 2)], fill=(40, 40, 40), width=2)   # a table rule is not text
    assert pixel_vote(ruled, 24, p)["ok"]
    assert ink_bands(Image.new("RGB", (50, 50), (200, 200, 200)), 0.7)[0] == []


def test_geometric_share_and_token_recall():
    quad = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert inside_share(quad, [0, 0, 10, 10]) == 1.0
    assert inside_share(quad, [0, 0, 10, 5]) == pytest.approx(5 / 9, abs=1e-9)   # 9 x 9 grid: rows 0-4 of 9
    assert token_recall("Sodium 140.4 mmol/L", "<think>x</think>Sodium 140.4 mmol/L") == 1.0
    assert token_recall("Sodium 140.4 mmol/L", "Potassium 4.1") == 0.0


# ----------------------------------------------------------------------------- think with image, rendered reports
def _render_reports(root: Path, n: int = 24) -> Path:
    """Lab reports rendered by the CPT stage's own renderer into `root` as `data/cpt_data` would hold them
    (images content-addressed under data/cpt_data/images, samples in part-00000.jsonl). No perspective warp,
    and a third rotated, so a small run has both plain and rotated reports."""
    out = root / "data/cpt_data"
    store = ImageStore(out / "images", "data/cpt_data/images", max_pixels=4_000_000)
    params = OCRParams(images=n, render=OCRRenderParams(perspective_p=0.0, rotate_p=0.34, occlusion_p=0.0))
    rendered = synthesize_ocr(n, 7, params, store.put_bytes)
    assert not rendered.rejected
    (out / "samples").mkdir(parents=True)
    with open(out / "samples/part-00000.jsonl", "w", encoding="utf-8") as f:
        for s in rendered.kept:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    return out / "samples"


def _ocr_samples(samples_dir: Path, n_plain=4, n_rotated=2):
    plain, rotated = [], []
    everything = load_ocr_samples(samples_dir)
    assert len(everything) == 24 and load_ocr_samples(samples_dir, limit=3) == everything[:3]
    assert all(s["task"] == "ocr_transcription" for s in everything)   # the ocr_qa samples are skipped
    for s in everything:
        a = s["meta"]["augment"]
        if a.get("rotation_deg") and len(rotated) < n_rotated:
            rotated.append(s)
        elif not a.get("rotation_deg") and len(plain) < n_plain:
            plain.append(s)
    assert len(rotated) == n_rotated and len(plain) == n_plain
    return plain + rotated


class StubProbe:
    """Wrong on the full report, right on the crop (by image path), the shape of a model that needs the zoom."""

    def __init__(self, full_right=False):
        self.full_right = full_right
        self.asked = []

    def correct(self, questions):
        self.asked.extend(questions)
        return [self.full_right if "cpt_data" in q.images[0] else True for q in questions]


class StubExpert:
    name = "stub"

    def __init__(self, fn):
        self.fn = fn

    def answer(self, queries):
        return [self.fn(q) for q in queries]


@pytest.fixture(scope="module")
def reports_root(tmp_path_factory):
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def ocr(reports_root):
    return _ocr_samples(_render_reports(reports_root))


def test_table_rows_match_the_row_lines(ocr):
    s = ocr[0]
    rows = table_rows(s)
    lines = [ln for ln in s["meta"]["lines"] if ln["kind"] == "row"]
    assert len(rows) == len(lines) and all(len(r) == 5 for r in rows)
    assert " ".join(c for c in rows[0] if c) == lines[0]["text"]
    cands = _candidates(s, AgenticImageParams(rows_per_image=2))
    assert len(cands) == 2 and cands[0].row < cands[1].row
    prompt = {"en": "What is the result of {}?", "zh": "{}的结果是多少？"}[s["meta"]["lang"]]
    assert cands[0].question == prompt.format(cands[0].cells[0])


def test_agentic_image_on_rendered_reports(ocr, reports_root, tmp_path):
    tools = ImageTools(reports_root, tmp_path / "img", ImageToolParams(image_dir="data/mid_data/images"))
    params = AgenticImageParams(rows_per_image=1)
    probe = StubProbe()
    out = agentic_image(ocr, tools, params, probe=probe)
    assert out.read == len(ocr) == len(out.kept) + len(out.rejected)
    assert len(out.kept) >= 4, out.by_gate()
    # every candidate past perception is asked twice (full report, then crop); this probe keeps them all
    assert len(probe.asked) == 2 * len(out.kept)
    full, zoomed = probe.asked[: len(out.kept)], probe.asked[len(out.kept):]
    assert all("cpt_data/images" in q.images[0] for q in full) and all(q.images[0].endswith(".png") for q in zoomed)
    assert [(q.question, q.options, q.gold) for q in full] == [(q.question, q.options, q.gold) for q in zoomed]
    rotated = [s for s in out.kept if s["meta"]["rotate_angle"]]
    assert rotated, "the rotated reports must be read upright"
    for s in out.kept:
        validate_sample(s)
        assert (s["family"], s["phase"]) == ("agentic_image", 3)
        msgs = s["messages"]
        calls = [c["function"] for m in msgs for c in (m.get("tool_calls") or [])]
        assert [c["name"] for c in calls] == (["ROTATE", "ZOOM"] if s["meta"]["rotate_angle"] else ["ZOOM"])
        assert len(s["images"]) == len(calls) + 1
        zoom = calls[-1]["arguments"]
        assert zoom["bbox"] == s["meta"]["crop_box"] and zoom["imgidx"] == len(s["images"]) - 2
        assert "<bbox>" in msgs[-3]["reasoning_content"]                           # the box is in the trajectory
        # every tool output replays to the same file
        for i, c in enumerate(calls):
            again = tools.call(c["name"], c["arguments"], s["images"][: i + 1])
            assert again.ref == s["images"][i + 1]
        # the crop shows one text line (re-checked on the stored file) and the answer is the row's value
        crop = tools.open(s["images"][-1]["path"])
        assert pixel_vote(crop, s["meta"]["experts"]["pixel"]["row_height_px"], params)["ok"]
        row = table_rows(next(o for o in ocr if o["id"] == s["source_ids"][0]))[s["meta"]["row"]]
        assert msgs[-1]["content"] == f"{row[1]} {row[3]}".strip() == s["meta"]["answer"]
        assert s["meta"]["options"][s["meta"]["gold_option"]] == row[1]
    again = agentic_image(ocr, tools, params, probe=StubProbe())
    assert [s["id"] for s in again.kept] == [s["id"] for s in out.kept]          # deterministic


def test_tool_effectiveness_and_expert_gates(ocr, reports_root, tmp_path):
    tools = ImageTools(reports_root, tmp_path / "img")
    params = AgenticImageParams(rows_per_image=1)
    solved = agentic_image(ocr, tools, params, probe=StubProbe(full_right=True))
    assert not solved.kept
    assert solved.by_gate()["tool_effectiveness"]["solved_without_tool"] >= 4
    unchecked = agentic_image(ocr, tools, params)
    assert unchecked.kept and all(s["meta"]["tool_effectiveness"] == "unchecked" for s in unchecked.kept)
    n = len(unchecked.kept)

    def reads_row(q):
        # the expert sees the crop file; it "reads" it correctly by looking the crop up among the kept samples
        s = next(s for s in unchecked.kept if q.images[0].endswith(s["images"][-1]["path"].split("/")[-1]))
        return Reply("stub", next(ln["text"] for ln in s_source(s)["meta"]["lines"] if ln["row"] == s["meta"]["row"]
                                  and ln["kind"] == "row"))

    def s_source(s):
        return next(o for o in ocr if o["id"] == s["source_ids"][0])

    agree = agentic_image(ocr, tools, params, expert=StubExpert(reads_row))
    assert len(agree.kept) == n and all(s["meta"]["experts"]["expert"]["overlap"] == 1.0 for s in agree.kept)
    wrong = agentic_image(ocr, tools, params, expert=StubExpert(lambda q: Reply("stub", "Patient ID 123")))
    assert not wrong.kept and wrong.by_gate()["perception"]["expert_disagrees"] == n
    down = agentic_image(ocr, tools, params, expert=StubExpert(lambda q: Reply("stub", None, "timeout")))
    assert down.by_gate()["perception"]["expert_failed"] == n


def test_skewed_rows_and_non_ocr_samples_are_rejected_with_reasons(ocr, reports_root, tmp_path):
    tools = ImageTools(reports_root, tmp_path / "img")
    s = json.loads(json.dumps(ocr[0]))
    for ln in s["meta"]["lines"]:                      # a perspective that slants every line by 3 row heights
        (x0, y0), (x1, _), (_, y2), _ = ln["quad"]
        h = y2 - y0
        ln["quad"] = [[x0, y0], [x1, y0 + 3 * h], [x1, y0 + 4 * h], [x0, y0 + h]]
    not_ocr = {"id": "x", "task": "caption", "images": [], "messages": []}
    out = agentic_image([s, not_ocr], tools, AgenticImageParams(rows_per_image=2))
    assert out.read == 3 == len(out.rejected)
    assert out.by_gate() == {"input": {"not_ocr_transcription": 1, "row_box_skewed": 2}}
