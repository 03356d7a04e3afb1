"""Perplexity selection with a real (tiny) causal LM built and trained here, saved and loaded by path:
batched NLL equals unbatched NLL, in-distribution text scores lower than scrambled text, and the
quantile band keeps the middle with reasons for the rest."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tasks.cpt_synthesis.perplexity import PerplexityScorer, sample_text, select_by_perplexity
from tasks.cpt_synthesis.samples import make_sample

TRAIN = ["asthma can be treated with salbutamol .", "wheezing is a symptom of asthma .",
         "pneumonia can be caused by bacteria .", "cough is a symptom of pneumonia ."]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_lm")
    words = sorted({w for s in TRAIN for w in s.split()} | {"question:", "answer:"})
    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
                                  eos_token="[EOS]")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=2, eos_token_id=3)
    model = LlamaForCausalLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = tok(TRAIN, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for _ in range(60):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def test_nll_is_batch_invariant_and_ranks_text(model_dir):
    texts = [TRAIN[0], "salbutamol symptom . bacteria asthma of with", TRAIN[3], "x"]
    one = PerplexityScorer(model_dir, batch_size=1).nll(texts)
    many = PerplexityScorer(model_dir, batch_size=4).nll(texts)
    assert one[3] is None and many[3] is None                        # a single token: nothing to predict
    assert all(abs(a - b) < 1e-4 for a, b in zip(one[:3], many[:3]))    # padding does not leak into scores
    assert one[0] < one[1] and one[2] < one[1]


def test_select_band_with_reasons(model_dir):
    samples = [make_sample("text", "passage", [f"kg-edge:{i}"], text=t) for i, t in enumerate(
        [TRAIN[0], TRAIN[1], "salbutamol symptom . bacteria asthma of with", TRAIN[2], "x"])]
    nll = PerplexityScorer(model_dir, batch_size=2).nll([sample_text(s) for s in samples])
    out, report = select_by_perplexity(samples, nll, drop_high=0.25)
    assert out.reasons() == {"perplexity_too_high": 1, "too_short_to_score": 1}
    assert {r["item"]["id"] for r in out.rejected} == {samples[2]["id"], samples[4]["id"]}
    assert all("nll" in s["meta"] for s in out.kept) and report["scored"] == 4
    out, _ = select_by_perplexity(samples, nll, drop_high=0.0, drop_low=0.25)
    assert out.reasons() == {"perplexity_too_low": 1, "too_short_to_score": 1}
    with pytest.raises(ValueError):
        select_by_perplexity(samples, nll, drop_high=0.6, drop_low=0.5)


def test_sample_text_of_conversations():
    s = make_sample("text", "atomic_qa", ["e"], messages=[{"role": "user", "content": "What causes x?"},
                                                         {"role": "assistant", "content": "Y causes x."}])
    assert sample_text(s) == "Question: What causes x?\nAnswer: Y causes x."
