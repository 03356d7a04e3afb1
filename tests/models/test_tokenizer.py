"""models.tokenizer: seeded text selection, deterministic byte-level BPE, special tokens."""

from __future__ import annotations

import json

import pytest

from models.build import read_corpus
from models.chat_template import build_chat_template
from models.config import SpecialTokens
from models.tokenizer import (
    TokenizerError,
    select_texts,
    tokenizer_stats,
    train_bpe,
    wrap_tokenizer,
)

TOKENS = SpecialTokens()


def trained(items, seed=7, vocab=500):
    train, holdout = select_texts(items, max_texts=150, holdout=10, seed=seed, max_chars=2000)
    tok = wrap_tokenizer(train_bpe(train, vocab_size=vocab, min_frequency=2, tokens=TOKENS), TOKENS,
                         build_chat_template(TOKENS), 512)
    return tok, holdout


def saved_tokenizer_json(tok, path) -> bytes:
    tok.save_pretrained(path)
    return (path / "tokenizer.json").read_bytes()


def test_same_corpus_and_seed_give_identical_tokenizer_json(corpus, tmp_path):
    items = read_corpus(corpus["kept"]).items
    a = saved_tokenizer_json(trained(items)[0], tmp_path / "a")
    b = saved_tokenizer_json(trained(list(reversed(items)))[0], tmp_path / "b")  # shard order irrelevant
    assert a == b
    c = saved_tokenizer_json(trained(items, seed=8)[0], tmp_path / "c")
    assert json.loads(c)["model"]["merges"] != json.loads(a)["model"]["merges"]   # other texts, other merges


def test_selection_is_seeded_disjoint_and_capped():
    items = [(f"id{i}", f"text number {i} " * 3) for i in range(100)] + [("empty", ""), ("blank", "  \n")]
    train, holdout = select_texts(items, max_texts=30, holdout=5, seed=1, max_chars=10)
    assert len(train) == 30 and len(holdout) == 5
    assert all(len(t) <= 10 for t in train + holdout) and "" not in train
    assert select_texts(items, max_texts=30, holdout=5, seed=1, max_chars=10) == (train, holdout)
    full_train, full_holdout = select_texts(items, max_texts=1000, holdout=5, seed=1)
    assert not set(full_train) & set(full_holdout) and len(full_train) == 95


def test_special_tokens_ids_and_decoding(corpus):
    tok, _ = trained(read_corpus(corpus["kept"]).items)
    assert tok.convert_ids_to_tokens(list(range(6))) == TOKENS.control()
    assert tok.eos_token == TOKENS.im_end and tok.pad_token == TOKENS.pad and tok.bos_token is None
    assert tok.image_token == "<image>" and tok.image_token_id == 3
    for t in TOKENS.all():
        assert len(tok.encode(t, add_special_tokens=False)) == 1
    text = "<think>why</think><tool_call>{}</tool_call><|im_end|>"
    decoded = tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=True)
    assert decoded == "<think>why</think><tool_call>{}</tool_call>"           # markup stays, control goes
    assert tok("no bos here")["input_ids"] == tok.encode("no bos here", add_special_tokens=False)
    # digits are split one by one: a lab value is not one memorised token
    assert [tok.decode([i]) for i in tok.encode("4025", add_special_tokens=False)] == ["4", "0", "2", "5"]


def test_stats_on_holdout(corpus):
    tok, holdout = trained(read_corpus(corpus["kept"]).items)
    stats = tokenizer_stats(tok, holdout)
    assert stats["holdout_texts"] == 10 and stats["bytes_per_token"] > 1.5 and 0 < stats["tokens_per_word"] < 5


def test_no_texts_is_a_clear_error():
    with pytest.raises(TokenizerError, match="no training texts"):
        train_bpe([], vocab_size=300, min_frequency=1, tokens=TOKENS)
