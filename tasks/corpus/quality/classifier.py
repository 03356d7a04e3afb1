"""The fastText quality classifier: training files, deterministic training, scoring.

fastText is what the paper uses (§3.1, ref [29]): a linear model over word n-grams, fast enough to
score a web-scale corpus on CPU. Determinism: fastText's SGD is seeded per thread, so `thread=1`
with a fixed `seed` and a fixed example order gives the same model on every run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

HIGH, LOW = "high", "low"
_DIGITS = re.compile(r"\d")
_PUNCT_CHARS = '.,!?;:()[]"|'           # split off as tokens of their own
# A whole word (between single spaces) that is not the __nl__ token and holds a lower-case ASCII
# letter and a junk symbol: the words `^(?=.*[a-z])(?=.*[#@$%^&*~{}<>_=+\\]).*$` accepted one
# match call at a time before.
_JUNK_WORD = re.compile(r"(?<![^ ])(?!__nl__(?![^ ]))(?=[^ ]*[#@$%^&*~{}<>_=+\\])(?=[^ ]*[a-z])[^ ]+")
MAX_WORDS = 1000  # longer texts are scored on their head: bounds memory and time per example


@dataclasses.dataclass
class FastTextParams:
    epoch: int = 10
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 50
    min_count: int = 2
    # fastText's default 2M hash buckets x dim floats makes a ~400 MB model; 200k keeps it ~40 MB
    # with no measurable loss on a two-class problem of this size.
    bucket: int = 200_000
    minn: int = 0         # char n-grams (minn..maxn) make garbled words visible; 0 = off
    maxn: int = 0


def to_line(text: str) -> str:
    """One fastText example line: lower-cased, punctuation split off, newlines as a token.

    fastText reads one example per line, so newlines must go; they carry signal (menus, lists),
    hence the `__nl__` token instead of a space. Digits map to 0 (numbers carry no quality signal,
    and it shrinks the vocabulary); a word mixing letters with symbols (OCR/encoding garbage) maps
    to `__junk__`, because each garbled form is unique and fastText ignores words it has not seen,
    which would make garbled text look like clean text that is merely shorter.
    """
    t = _DIGITS.sub("0", text.lower())
    # One C-level str.replace per punctuation mark: what re.sub(r"([.,!?;:()\[\]\"|])", r" \1 ")
    # did, without the template expansion Python 3.11's re runs in Python for every match.
    for c in _PUNCT_CHARS:
        if c in t:
            t = t.replace(c, f" {c} ")
    # Lines joined by the __nl__ token; split() already collapses and strips every whitespace run.
    line = " ".join(" __nl__ ".join(t.splitlines()).split()[:MAX_WORDS])
    # Words are now separated by exactly one space, so the junk rule is one regex pass over the
    # line instead of one match call per word.
    return _JUNK_WORD.sub("__junk__", line)


def write_training_file(path: Path, examples: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for text, label in examples:
            f.write(f"__label__{label} {to_line(text)}\n")


def train(examples: list[tuple[str, str]], params: FastTextParams, seed: int, workdir: Path):
    """A fastText model from (text, "high"|"low") examples; order is shuffled with `seed`.

    Training runs in a fresh interpreter. Measured here: fasttext-numpy2 0.10.4 trained on the
    same file with the same seed gives the same model in a fresh process, but in a process with
    a different allocation history (e.g. after other work) it sometimes aborts with
    "Encountered NaN" — a sign it reads memory it never initialized. A clean process per
    training makes the result a function of (file, params, seed) alone.
    """
    import fasttext

    if {lab for _, lab in examples} != {HIGH, LOW}:
        raise ValueError("training needs both 'high' and 'low' examples")
    examples = list(examples)
    random.Random(seed).shuffle(examples)
    workdir.mkdir(parents=True, exist_ok=True)
    path, model_path = workdir / "train.txt", workdir / "model.bin"
    write_training_file(path, examples)
    args = dict(input=str(path), epoch=params.epoch, lr=params.lr, wordNgrams=params.word_ngrams,
                dim=params.dim, minCount=params.min_count, bucket=params.bucket, minn=params.minn,
                maxn=params.maxn, loss="softmax", thread=1, seed=seed, verbose=0)
    proc = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(args), str(model_path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise RuntimeError(f"fastText training on {path} failed: {proc.stderr.strip()[-500:]}")
    return fasttext.load_model(str(model_path))


_TRAIN_SCRIPT = (
    "import json, sys, fasttext\n"
    "fasttext.train_supervised(**json.loads(sys.argv[1])).save_model(sys.argv[2])\n"
)


def scores(model, texts: list[str], batch: int = 2000) -> list[float]:
    """P(high) for each text, in order."""
    out: list[float] = []
    for i in range(0, len(texts), batch):
        labels, probs = model.predict([to_line(t) for t in texts[i:i + batch]], k=-1)
        for labs, ps in zip(labels, probs):
            d = dict(zip(labs, ps))
            out.append(float(d.get(f"__label__{HIGH}", 0.0)))
    return out
