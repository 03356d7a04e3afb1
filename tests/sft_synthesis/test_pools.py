"""SFT candidate pools: each loader on small hand-written sources (bad rows, selection, the sample built),
KG atomic QA parsed back into facts with distractors that exclude true alternatives, and PubMedQA on the
real files without any test PMID."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from project_copy import DATA_ROOT

from tasks.common.io import file_sha256
from tasks.mid_synthesis.samples import mid_sample, tool_call
from tasks.sft_synthesis.pools import (
    CHOICE_INSTRUCTION,
    FILL_INSTRUCTION,
    YES_NO_INSTRUCTION,
    PoolParams,
    load_kg_qa,
    load_medquad_pool,
    load_mid_data,
    load_ocr,
    load_pools,
    load_pubmedqa,
    load_vqa_rad_pool,
    parse_atomic,
    trim_at_sentence,
)


def _jsonl(path: Path, rows: list, raw_lines: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(x + "\n" for x in raw_lines))
    return path


def _image(path: Path, payload: bytes = b"\xff\xd8fake-jpeg") -> tuple[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return str(path), file_sha256(path)


# ----------------------------------------------------------------------------- helpers
def test_trim_at_sentence_cuts_at_the_last_sentence_end_in_the_window():
    assert trim_at_sentence("One. Two three. Four", 16) == "One. Two three."
    assert trim_at_sentence("One. Two three. Four", 10) == "One."
    assert trim_at_sentence("One. Two three. Four", 3) is None
    assert trim_at_sentence("Take 2.5 mg daily and more text", 12) is None      # "2.5" is no sentence end
    assert trim_at_sentence("  Short.  ", 100) == "Short."


def test_parse_atomic_recovers_head_tail_and_the_side_asked():
    q_head = parse_atomic("Which condition can be treated with acetaminophen?",
                          "Fever can be treated with acetaminophen.", "treated_by")
    assert q_head == {"head": "Fever", "tail": "acetaminophen", "subject": "acetaminophen", "answer": "Fever",
                      "side": "head"}
    q_tail = parse_atomic("What is a treatment for fever?", "Fever can be treated with acetaminophen.", "treated_by")
    assert (q_tail["answer"], q_tail["side"]) == ("acetaminophen", "tail")
    sym = parse_atomic("What is gout associated with?", "Hyperuricemia is associated with gout.", "associated_with")
    assert (sym["subject"], sym["answer"], sym["side"]) == ("gout", "Hyperuricemia", "head")
    assert parse_atomic("Why does fever happen?", "Fever can be treated with acetaminophen.", "treated_by") is None
    assert parse_atomic("What is a treatment for fever?", "Acetaminophen helps.", "treated_by") is None


# ----------------------------------------------------------------------------- kg_qa
def _atomic(i: int, q: str, a: str, rel: str = "treated_by", task: str = "atomic_qa") -> dict:
    return {"id": f"cpt-atomic_qa-{i:02d}", "kind": "text", "task": task, "text": "", "images": [],
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "meta": {"generator": "local", "relation": rel, "edge_id": i}, "source_ids": [f"kg-edge:{i}"]}


FACTS = [("fever", "acetaminophen"), ("fever", "ibuprofen"), ("gout", "colchicine"), ("angina", "nitroglycerin"),
         ("asthma", "albuterol")]


def _kg_dir(tmp_path: Path) -> Path:
    rows = [_atomic(i, f"What is a treatment for {h}?", f"{h.capitalize()} can be treated with {t}.")
            for i, (h, t) in enumerate(FACTS)]
    rows.append(_atomic(10, "Which condition can be treated with colchicine?", "Gout can be treated with colchicine."))
    rows.append(_atomic(11, "What helps fever?", "Rest helps a fever settle."))               # LLM-written pair
    rows.append(_atomic(12, "caption", "not QA", task="caption"))                             # another CPT task
    return _jsonl(tmp_path / "cpt" / "part-00000.jsonl", rows, raw_lines=("{broken",)).parent


def test_kg_qa_choices_exclude_every_stated_true_alternative(tmp_path):
    out = load_kg_qa(_kg_dir(tmp_path), n=10, seed=7, n_options=4)
    # 7 atomic rows + 1 broken line; the caption row is not a row of this pool. Row 10 asks for the head
    # (which condition?): gout is the only head answer of treated_by, no distractor exists.
    assert out.read == 8
    assert out.by_gate() == {"input": {"bad_json": 1, "too_few_distractors": 1, "unparsed_fact": 1}}
    assert len(out.kept) == 5
    by_cpt = {s["meta"]["cpt_id"]: s for s in out.kept}
    fever_acet = by_cpt["cpt-atomic_qa-00"]
    opts, gold = fever_acet["meta"]["options"], fever_acet["meta"]["gold_index"]
    # ibuprofen also treats fever (row 01): of the 5 tail answers only 3 are distractors, all taken
    assert opts[gold] == "Acetaminophen"
    assert set(opts) == {"Acetaminophen", "Albuterol", "Colchicine", "Nitroglycerin"}
    assert set(by_cpt["cpt-atomic_qa-01"]["meta"]["options"]) == {"Ibuprofen", "Albuterol", "Colchicine",
                                                                  "Nitroglycerin"}
    letter = "ABCD"[gold]
    user = fever_acet["messages"][0]["content"]
    assert user.startswith("What is a treatment for fever?\nA. ") and user.endswith(CHOICE_INSTRUCTION)
    assert f"\n{letter}. Acetaminophen\n" in user
    assert fever_acet["messages"][1] == {"role": "assistant", "content": f"{letter}. Acetaminophen"}
    assert fever_acet["meta"]["accuracy"] == "consensus" and fever_acet["family"] == "kg_qa"
    assert fever_acet["source_ids"] == ["cpt-atomic_qa-00", "kg-edge:0"]
    again = load_kg_qa(_kg_dir(tmp_path), n=10, seed=7, n_options=4)
    assert [s["id"] for s in again.kept] == [s["id"] for s in out.kept]


def test_kg_qa_selection_is_bounded_and_seeded(tmp_path):
    a = load_kg_qa(_kg_dir(tmp_path), n=2, seed=7, n_options=3)
    b = load_kg_qa(_kg_dir(tmp_path), n=2, seed=7, n_options=3)
    assert len(a.kept) == 2 and a.by_gate()["select"] == {"over_max": 3}
    assert a.read == len(a.kept) + len(a.rejected)
    assert [s["id"] for s in a.kept] == [s["id"] for s in b.kept]


# ----------------------------------------------------------------------------- mid_data
def test_mid_data_keeps_reasoning_tools_and_images(tmp_path):
    rel = "data/mid_data/images/ab/x.jpg"
    _, sha = _image(tmp_path / rel)
    img = mid_sample("visual_cot", 3, ["vqa_rad-train-1"],
                     [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which side?"}]},
                      {"role": "assistant", "reasoning_content": "The opacity is left.", "content": "B"}],
                     answer="B", answer_kind="choice", images=[{"path": rel, "sha256": sha}], options=["R", "L"],
                     gold_index=1, source="vqa_rad")
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    agent = mid_sample("agentic_search", 2, ["medquad-1"],
                       [{"role": "user", "content": "What treats gout?"},
                        {"role": "assistant", "content": "", "tool_calls": [tool_call("search", {"q": "gout"})]},
                        {"role": "tool", "name": "search", "content": "Colchicine treats gout."},
                        {"role": "assistant", "reasoning_content": "The search says so.", "content": "Colchicine"}],
                       answer="Colchicine", answer_kind="fill", tools=tools)
    gone = mid_sample("visual_cot", 3, ["vqa_rad-train-2"],
                      [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]},
                       {"role": "assistant", "content": "A"}], answer="A", answer_kind="choice",
                      images=[{"path": "data/mid_data/images/cd/gone.jpg", "sha256": "c" * 64}])
    bad = {**agent, "family": "nonsense"}
    d = _jsonl(tmp_path / "data/mid_data/samples/part-00000.jsonl", [img, agent, gone, bad]).parent
    out = load_mid_data(d, n=10, seed=1, root=tmp_path)
    assert out.read == 4 and out.by_gate() == {"input": {"bad_mid_sample:bad_family": 1, "missing_image": 1}}
    by_mid = {s["meta"]["mid_id"]: s for s in out.kept}
    s = by_mid[img["id"]]
    assert s["family"] == "mid_data" and s["meta"]["accuracy"] == "code" and s["id"].startswith("sft-mid_data-")
    assert s["messages"] == img["messages"] and s["images"] == img["images"]
    assert s["source_ids"] == [img["id"], "vqa_rad-train-1"]
    assert (s["meta"]["mid_family"], s["meta"]["mid_phase"], s["meta"]["mid_source"]) == ("visual_cot", 3, "vqa_rad")
    assert (s["meta"]["options"], s["meta"]["gold_index"], s["meta"]["answer"]) == (["R", "L"], 1, "B")
    t = by_mid[agent["id"]]
    assert t["tools"] == tools and t["messages"][1]["tool_calls"] == [tool_call("search", {"q": "gout"})]


# ----------------------------------------------------------------------------- medquad
def _medquad_doc(i: int, q: str, a: str, source: str = "medquad") -> dict:
    return {"id": f"medquad-{i}", "source": source, "text": f"{q}\n\n{a}", "meta": {"question": q}}


def test_medquad_answers_are_cut_at_a_sentence_end(tmp_path):
    long = "Gout is arthritis. It hurts a lot. Colchicine helps in most attacks of it."
    d = _jsonl(tmp_path / "kept/part-00000.jsonl", [
        _medquad_doc(1, "What is gout?", long), _medquad_doc(2, "What is X?", "Short answer."),
        _medquad_doc(3, "What is Y?", "A list without end " + "word " * 20),
        _medquad_doc(4, "What is Z?", "Other corpus.", source="pubtator")]).parent
    out = load_medquad_pool(d, n=10, seed=1, max_answer_chars=40)
    assert out.read == 3 and out.by_gate() == {"input": {"no_sentence_end": 1}}
    gout = next(s for s in out.kept if s["source_ids"] == ["medquad-1"])
    assert gout["messages"] == [{"role": "user", "content": "What is gout?"},
                                {"role": "assistant", "content": "Gout is arthritis. It hurts a lot."}]
    assert gout["meta"]["answer"] == "Gout is arthritis. It hurts a lot." and gout["meta"]["trimmed"] is True
    short = next(s for s in out.kept if s["source_ids"] == ["medquad-2"])
    assert short["meta"]["trimmed"] is False and short["meta"]["answer_kind"] == "open"


# ----------------------------------------------------------------------------- vqa_rad
def test_vqa_rad_yes_no_is_judgement_and_images_come_from_the_store(tmp_path):
    bench = tmp_path / "bench"
    src, sha = _image(bench / "images" / "synpic1.jpg")
    _image(bench / "images" / "synpic2.jpg", b"\xff\xd8not-in-store")
    store = "data/collect/images"
    (tmp_path / store / sha[:2]).mkdir(parents=True)
    (tmp_path / store / sha[:2] / f"{sha}.jpg").write_bytes(Path(src).read_bytes())
    rows = [{"qid": 1, "image_name": "synpic1.jpg", "question": "Is there a fracture?", "answer": "Yes",
             "image_organ": "CHEST", "answer_type": "CLOSED"},
            {"qid": 2, "image_name": "synpic1.jpg", "question": "Where is the mass?", "answer": "left lung",
             "image_organ": "CHEST", "answer_type": "OPEN"},
            {"qid": 3, "image_name": "synpic2.jpg", "question": "Is it normal?", "answer": "no",
             "image_organ": "HEAD", "answer_type": "CLOSED"}]
    (bench / "trainset.json").write_text(json.dumps(rows))
    out = load_vqa_rad_pool(bench / "trainset.json", n=10, seed=1, image_store=store, root=tmp_path)
    assert out.read == 3 and out.by_gate() == {"input": {"missing_image": 1}}
    yes, where = sorted(out.kept, key=lambda s: s["source_ids"][0])
    assert yes["source_ids"] == ["vqa_rad-train-1"]
    assert yes["images"] == [{"path": f"{store}/{sha[:2]}/{sha}.jpg", "sha256": sha}]
    assert yes["messages"][0]["content"] == [{"type": "image"},
                                             {"type": "text", "text": f"Is there a fracture?\n{YES_NO_INSTRUCTION}"}]
    assert (yes["meta"]["answer_kind"], yes["meta"]["options"], yes["meta"]["gold_index"]) == ("judgement",
                                                                                                ["yes", "no"], 0)
    assert where["meta"]["answer_kind"] == "fill" and "options" not in where["meta"]
    assert where["messages"][0]["content"][1]["text"].endswith(FILL_INSTRUCTION)
    assert where["messages"][1] == {"role": "assistant", "content": "left lung"}


# ----------------------------------------------------------------------------- ocr
def test_ocr_conversations_are_code_verified(tmp_path):
    rel = "data/cpt_data/images/aa/r.jpg"
    _, sha = _image(tmp_path / rel)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the Sodium result?"}]},
            {"role": "assistant", "content": "140.4 mmol/L"},
            {"role": "user", "content": "Is Sodium flagged?"},
            {"role": "assistant", "content": "No, Sodium is not flagged."}]
    ok = {"id": "cpt-ocr_qa-1", "task": "ocr_qa", "kind": "ocr", "images": [{"path": rel, "sha256": sha}],
          "messages": msgs, "meta": {"generator": "local", "lang": "en", "lines": [1, 2, 3]}, "source_ids": []}
    gone = {**ok, "id": "cpt-ocr_qa-2", "images": [{"path": "data/cpt_data/images/bb/gone.jpg", "sha256": "b" * 64}]}
    other = {**ok, "id": "cpt-ocr_transcription-1", "task": "ocr_transcription"}
    d = _jsonl(tmp_path / "cpt/part-00000.jsonl", [ok, gone, other]).parent
    out = load_ocr(d, n=5, seed=1, root=tmp_path)
    assert out.read == 2 and out.by_gate() == {"input": {"missing_image": 1}}
    (s,) = out.kept
    assert s["messages"] == msgs and s["family"] == "ocr" and s["source_ids"] == ["cpt-ocr_qa-1"]
    assert (s["meta"]["accuracy"], s["meta"]["answer"], s["meta"]["turns"]) == ("code", "No, Sodium is not flagged.", 2)
    assert "lines" not in s["meta"]


# ----------------------------------------------------------------------------- pubmedqa
def _pq(question: str, label: str, long_answer: str = "Because the data say so.") -> dict:
    return {"QUESTION": question, "CONTEXTS": ["Cells were counted.", "Counts rose."],
            "LABELS": ["METHODS", "RESULTS"], "LONG_ANSWER": long_answer, "final_decision": label}


def test_pubmedqa_drops_test_ids_and_reads_labels(tmp_path):
    pqal = {"1": _pq("Does A raise B?", "no"), "2": _pq("Does C work?", "yes"), "3": _pq("Is D safe?", "unsure"),
            "4": _pq("Held out?", "yes")}
    (tmp_path / "ori_pqal.json").write_text(json.dumps(pqal))
    (tmp_path / "test_ground_truth.json").write_text(json.dumps({"4": "yes"}))
    out = load_pubmedqa(tmp_path / "ori_pqal.json", tmp_path / "test_ground_truth.json", n=10, seed=1)
    assert out.read == 3 and out.by_gate() == {"input": {"bad_label": 1}}
    no = next(s for s in out.kept if s["meta"]["pmid"] == "1")
    prompt = "Context:\nMethods: Cells were counted.\nResults: Counts rose.\n\nQuestion: Does A raise B?"
    assert no["messages"] == [{"role": "user", "content": f"{prompt}\nAnswer yes, no or maybe, then explain."},
                              {"role": "assistant", "content": "No. Because the data say so."}]
    assert (no["meta"]["question"], no["meta"]["options"], no["meta"]["gold_index"]) == (prompt,
                                                                                        ["yes", "no", "maybe"], 1)
    assert no["source_ids"] == ["pubmedqa-pqal-1"] and no["meta"]["answer_kind"] == "judgement"
    assert all(s["meta"]["pmid"] != "4" for s in out.kept)


def test_pubmedqa_real_files_never_hold_a_test_pmid():
    d = DATA_ROOT / "benchmarks" / "pubmedqa"
    if not (d / "ori_pqal.json").is_file():
        pytest.skip("real PubMedQA files not present")
    out = load_pubmedqa(d / "ori_pqal.json", d / "test_ground_truth.json", n=10 ** 6, seed=1234)
    test_ids = set(json.loads((d / "test_ground_truth.json").read_text()))
    assert len(test_ids) == 500
    assert (out.read, len(out.kept), out.rejected) == (500, 500, [])
    seen = {s["meta"]["pmid"] for s in out.kept} | {x.removeprefix("pubmedqa-pqal-") for s in out.kept
                                                   for x in s["source_ids"]}
    assert not seen & test_ids
    assert Counter(s["meta"]["answer"] for s in out.kept) == {"yes": 276, "no": 169, "maybe": 55}
    small = load_pubmedqa(d / "ori_pqal.json", d / "test_ground_truth.json", n=40, seed=1234)
    assert len(small.kept) == 40 and small.by_gate() == {"select": {"over_max": 460}}


# ----------------------------------------------------------------------------- load_pools
def test_load_pools_runs_the_chosen_sources_and_checks_params(tmp_path):
    (tmp_path / "bench/pubmedqa").mkdir(parents=True)
    (tmp_path / "bench/pubmedqa/ori_pqal.json").write_text(json.dumps({"1": _pq("Q?", "yes")}))
    (tmp_path / "bench/pubmedqa/test_ground_truth.json").write_text("{}")
    _kg_dir(tmp_path / "proj")
    params = PoolParams(sources=["pubmedqa", "kg_qa"], pubmedqa_dir="pubmedqa", cpt_samples="cpt", kg_qa_options=3)
    pools = load_pools(params, project_root=tmp_path / "proj", data_root=tmp_path / "bench", seed=7)
    assert list(pools) == ["kg_qa", "pubmedqa"]
    assert (len(pools["kg_qa"].kept), len(pools["pubmedqa"].kept)) == (5, 1)
    with pytest.raises(FileNotFoundError):
        load_pools(PoolParams(sources=["ocr"]), project_root=tmp_path / "nowhere", data_root=tmp_path, seed=7)
    with pytest.raises(ValueError, match="unknown pools"):
        PoolParams(sources=["webmd"])
