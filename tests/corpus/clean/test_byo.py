"""Decontamination against bring-your-own benchmarks (`decontam.byo`, eval's JSONL format)."""

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from eval.benchmarks import byo_spec, load_byo_jsonl
from tasks import clean
from tasks.common.config import ConfigError, load_stage_config
from tasks.common.io import ShardedJsonlWriter, StageSink
from tasks.common.records import make_record
from tasks.common.stage import main
from tasks.corpus.clean.decontam import BUNDLED
from tasks.corpus.clean.run import ByoBenchmarkConfig, CleanConfig, build_index, clean_records


def _words(text: str, start: int, n: int) -> str:
    return " ".join(text.split()[start:start + n])


def _draw_scan(path: Path) -> None:
    """A drawn test image (gradient and shapes): structure a perceptual hash keeps when resized."""
    im = Image.new("L", (256, 256), 0)
    d = ImageDraw.Draw(im)
    for x in range(256):
        d.line([(x, 0), (x, 255)], fill=x)
    d.ellipse((40, 60, 200, 220), fill=30)
    d.rectangle((100, 20, 160, 120), fill=250)
    im.save(path)


@pytest.fixture(scope="module")
def byo_files(tmp_path_factory, medquad_answers) -> dict:
    """Three bring-your-own benchmarks: an mcq file whose first question is a passage of a MedQuAD
    answer (plus two lines eval quarantines), a longform file whose reference is a passage of
    another, and a vqa file with its own image."""
    root = tmp_path_factory.mktemp("byo")
    mcq = root / "my_mcq.jsonl"
    lines = [
        json.dumps({"id": 101, "question": _words(medquad_answers[0], 0, 30),
                    "options": {"A": "yes", "B": "no"}, "answer": "A"}),
        json.dumps({"id": "q2", "question": "Which vitamin deficiency causes scurvy?",
                    "options": ["Vitamin C", "Vitamin D"], "answer": "Vitamin C"}),
        "{not json",
        json.dumps({"id": "q3", "question": "Which one?", "options": ["a", "b"], "answer": "c"}),
    ]
    mcq.write_text("\n".join(lines) + "\n")
    report = root / "my_report.jsonl"
    report.write_text(json.dumps({"id": "r1", "question": "Summarize the condition.",
                                  "reference": _words(medquad_answers[1], 5, 30)}) + "\n")
    (root / "vqa" / "images").mkdir(parents=True)
    _draw_scan(root / "vqa" / "images" / "scan.png")
    vqa = root / "vqa" / "my_vqa.jsonl"
    vqa.write_text(json.dumps({"id": "v1", "question": "Is there a fracture?", "images": ["images/scan.png"],
                               "answer": "no", "answer_type": "closed"}) + "\n")
    return {"my_mcq": (mcq, "mcq"), "my_report": (report, "longform"), "my_vqa": (vqa, "vqa"),
            "scan": root / "vqa" / "images" / "scan.png"}


def _byo_cfg(data_root, byo_files, names=("my_mcq", "my_report", "my_vqa")) -> CleanConfig:
    cfg = CleanConfig(data_root=str(data_root))
    cfg.decontam.byo = {n: ByoBenchmarkConfig(path=str(byo_files[n][0]), family=byo_files[n][1]) for n in names}
    return cfg


@pytest.fixture(scope="module")
def byo_index(data_root, byo_files):
    return build_index(_byo_cfg(data_root, byo_files))


@pytest.fixture
def corpus(medquad_answers, byo_files, tmp_path) -> list:
    """A record holding each BYO text, a clean one, and two copies of the BYO image (the exact file
    under another name; a downscaled JPEG re-encoding)."""
    exact = tmp_path / "copy_of_scan.png"
    exact.write_bytes(byo_files["scan"].read_bytes())
    reencoded = tmp_path / "reencoded.jpg"
    with Image.open(byo_files["scan"]) as im:
        im.resize((128, 128)).save(reencoded, quality=85)

    def image_rec(path, key):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        return make_record("own_images", key, "Question: Is there a fracture? Answer: no",
                           images=[{"path": str(path), "sha256": sha}])

    recs = [make_record("medquad", "q_leak", medquad_answers[0]),
            make_record("medquad", "ref_leak", medquad_answers[1]),
            make_record("medquad", "clean", medquad_answers[2]),
            image_rec(exact, "img_exact"),
            image_rec(reencoded, "img_reencoded")]   # in the order of NAMES
    return [(r, None) for r in recs]


NAMES = ("q_leak", "ref_leak", "clean", "img_exact", "img_reencoded")   # the corpus records, in order


def _run(pairs, cfg, index, out):
    """(summary, report rows, rejections) with record ids replaced by the names above."""
    name = {rec["id"]: n for n, (rec, _) in zip(NAMES, pairs, strict=True)}
    sink = StageSink(out)
    extra, report = clean_records(pairs, sink, cfg, index=index)
    summary = sink.close(**extra)
    rejected = {name[r["id"]]: r for p in sorted((out / "rejected").glob("part-*.jsonl"))
                for r in map(json.loads, p.open())}
    return summary, [{**r, "record_id": name[r["record_id"]]} for r in report], rejected


def test_listed_byo_benchmark_rejects_its_texts_and_images(corpus, data_root, byo_files, byo_index, tmp_path):
    cfg = _byo_cfg(data_root, byo_files)
    summary, report, rejected = _run(corpus, cfg, byo_index, tmp_path / "out")
    assert summary["read"] == len(corpus) == summary["kept"] + summary["rejected"]
    assert sorted(rejected) == ["img_exact", "img_reencoded", "q_leak", "ref_leak"]
    assert {r["reason"] for r in rejected.values()} == {"decontaminated"}
    assert "my_mcq/101" in rejected["q_leak"]["detail"]
    hits = sorted((r["record_id"], r["benchmark"], r["benchmark_item"], r["kind"]) for r in report)
    assert hits == [("img_exact", "my_vqa", "scan.png", "image_sha256"),
                    ("img_reencoded", "my_vqa", "scan.png", "image_phash"),
                    ("q_leak", "my_mcq", "101", "text"),
                    ("ref_leak", "my_report", "r1", "text")]
    # Eval finds each flagged item under the ids the report names.
    for name, item_key in (("my_mcq", "101"), ("my_report", "r1"), ("my_vqa", "scan.png")):
        path, family = byo_files[name]
        items = load_byo_jsonl(byo_spec(name, str(path), family), path.parent).items
        assert any(item_key in it.decontam_keys for it in items)


def test_byo_benchmarks_are_listed_as_checked_and_malformed_lines_counted(byo_index):
    assert byo_index.checked["my_mcq"] == {"items": 2, "source": "byo"}
    assert byo_index.checked["my_report"] == {"items": 1, "source": "byo"}
    assert byo_index.checked["my_vqa"] == {"items": 1, "source": "byo"}
    assert {b: c["source"] for b, c in byo_index.checked.items() if b in BUNDLED} == dict.fromkeys(BUNDLED, "bundled")
    assert list(byo_index.checked) == sorted(byo_index.checked)
    assert byo_index.stats["malformed"] == {"my_mcq": 2}   # bad JSON, answer not among options


def test_unlisted_byo_benchmark_is_not_checked(corpus, data_root, bench_index, tmp_path):
    cfg = CleanConfig(data_root=str(data_root))
    summary, report, rejected = _run(corpus, cfg, bench_index, tmp_path / "out")
    assert rejected == {} and report == []
    assert summary["read"] == summary["kept"] == len(corpus)
    assert bench_index.checked == {"medmcqa": {"items": 4183, "source": "bundled"},
                                   "medqa": {"items": 1273, "source": "bundled"},
                                   "mmlu_medical": {"items": 1089, "source": "bundled"},
                                   "pubmedqa": {"items": 500, "source": "bundled"},
                                   "vqa_rad": {"items": 450, "source": "bundled"}}


def _byo_args(byo_files, names) -> list[str]:
    return [a for n in names for a in (f"decontam.byo.{n}.path={byo_files[n][0]}",
                                       f"decontam.byo.{n}.family={byo_files[n][1]}")]


def test_stage_reports_byo_benchmarks_checked(tmp_path, data_root, corpus, byo_files, medquad_answers,
                                              isolated_mlflow):
    in_dir = tmp_path / "collect"
    writer = ShardedJsonlWriter(in_dir / "kept", shard_size=50)
    for rec, _ in corpus:
        writer.write(rec)
    writer.close()
    out_dir = tmp_path / "clean"
    summary = main(clean.STAGE, [f"in_dir={in_dir}", f"out_dir={out_dir}", f"data_root={data_root}",
                                 *_byo_args(byo_files, ["my_mcq"])])
    assert summary["read"] == len(corpus) == summary["kept"] + summary["rejected"]
    assert summary["rejected_by_reason"] == {"decontaminated": 1}
    rows = [json.loads(line) for line in (out_dir / clean.REPORT).read_text().splitlines()]
    q_leak = corpus[NAMES.index("q_leak")][0]["id"]
    assert [(r["record_id"], r["benchmark"], r["benchmark_item"]) for r in rows] == [(q_leak, "my_mcq", "101")]
    rsum = json.loads((out_dir / clean.REPORT_SUMMARY).read_text())
    assert rsum["benchmarks_checked"]["my_mcq"] == {"items": 2, "source": "byo"}
    assert sorted(rsum["benchmarks_checked"]) == sorted([*BUNDLED, "my_mcq"])
    assert rsum["index"]["malformed"] == {"my_mcq": 2}

    import mlflow

    run = next(r for r in mlflow.search_runs(experiment_names=["medxiaohe-pipeline"], output_format="list")
               if r.data.tags.get("stage") == "clean")
    m = run.data.metrics
    assert m["decontam.benchmarks_checked"] == len(BUNDLED) + 1
    assert m["decontam.items_checked.my_mcq"] == 2 and m["decontam.records.my_mcq"] == 1


def test_missing_byo_file_stops_the_stage_naming_the_param(tmp_path, data_root, byo_files, isolated_mlflow):
    in_dir = tmp_path / "collect"
    writer = ShardedJsonlWriter(in_dir / "kept", shard_size=50)
    writer.write(make_record("medquad", "a", "text " * 100))
    writer.close()
    missing = tmp_path / "nowhere" / "bench.jsonl"
    with pytest.raises(SystemExit, match=r"decontam\.byo\.gone\.path: benchmark file missing"):
        main(clean.STAGE, [f"in_dir={in_dir}", f"out_dir={tmp_path / 'clean'}", f"data_root={data_root}",
                           f"decontam.byo.gone.path={missing}", "decontam.byo.gone.family=mcq"])
    assert not (tmp_path / "clean").exists()


@pytest.mark.parametrize("args, message", [
    (["decontam.byo.x.path=a.jsonl", "decontam.byo.x.family=essay"], "unknown family 'essay'"),
    (["decontam.byo.medqa.path=a.jsonl", "decontam.byo.medqa.family=mcq"], "bundled benchmark"),
    (["decontam.byo.x.path=a.jsonl"], "family"),
    (["decontam.byo.x.path=a.jsonl", "decontam.byo.x.family=mcq", "decontam.byo.x.split=test"], "unknown key"),
])
def test_byo_config_errors_name_the_entry(args, message):
    with pytest.raises(ConfigError, match=message):
        load_stage_config("clean", CleanConfig, args)

