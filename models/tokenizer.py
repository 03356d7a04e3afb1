"""Tokenizers for the base model: a byte-level BPE trained on the cleaned corpus (tiny variant),
or an existing tokenizer (SmolLM2's, a user checkpoint's) given the same special tokens.

    from models.tokenizer import select_texts, train_bpe, wrap_tokenizer, tokenizer_stats
    train, holdout = select_texts(texts_with_ids, max_texts=20000, holdout=300, seed=1234)
    backend = train_bpe(train, vocab_size=8000, min_frequency=2, tokens=SpecialTokens())
    tok = wrap_tokenizer(backend, SpecialTokens(), chat_template, model_max_length=4096)

Choices and why:
- Byte-level BPE (GPT-2/SmolLM2 style): every byte sequence is encodable, so no text of the
  corpus (drug names, lab units, non-Latin names) ever becomes <unk>. Digits are split one by
  one before BPE, as in SmolLM2, so lab values are not memorised as whole numbers.
- NFC normalization inside the tokenizer: the clean stage normalizes the corpus, and the same
  normalization at inference keeps composed/decomposed accents on the same tokens.
- Deterministic: texts are chosen by a seeded hash of their record id (independent of shard
  order and file count), and the `tokenizers` BPE trainer breaks count ties by pair order, so
  the same corpus and seed give a byte-identical tokenizer.json (tested).
- Control tokens (padding, ChatML turns, image placeholders) are special and get the lowest
  ids (0..5, <|endoftext|> <|im_start|> <|im_end|> as in SmolLM2); the markup tokens
  (<think>, <tool_call>, ...) are atomic but not special, so decode(skip_special_tokens=True)
  keeps them for the parsers of the reasoning and agent stages.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import time
from collections.abc import Iterable

from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from models.config import SpecialTokens

WORD_RE = re.compile(r"\w+", re.UNICODE)


class TokenizerError(ValueError):
    pass


def select_texts(items: Iterable[tuple[str, str]], *, max_texts: int, holdout: int, seed: int,
                 max_chars: int = 0) -> tuple[list[str], list[str]]:
    """(train, holdout) texts from (id, text) pairs: the smallest seeded hashes of the ids.

    The `holdout` smallest go to the held-out set, the next `max_texts` to training; both keep
    hash order so the result does not depend on how the corpus is sharded.
    """
    def key(item: tuple[str, str]) -> bytes:
        return hashlib.sha256(f"{seed}:{item[0]}".encode()).digest()

    wanted = max(0, max_texts) + max(0, holdout)
    chosen = heapq.nsmallest(wanted, ((key(it), it[1]) for it in items if it[1] and it[1].strip()))
    texts = [text[:max_chars] if max_chars else text for _, text in chosen]
    return texts[holdout:], texts[:holdout]


def train_bpe(texts: list[str], *, vocab_size: int, min_frequency: int, tokens: SpecialTokens) -> Tokenizer:
    """A byte-level BPE `tokenizers.Tokenizer` with the control and markup tokens added."""
    if not texts:
        raise TokenizerError("no training texts: the corpus has no non-empty `text` field")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets for assistant masks
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
        special_tokens=tokens.control(), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    add_markup_tokens(tok, tokens)
    return tok


def add_markup_tokens(tok: Tokenizer, tokens: SpecialTokens) -> list[str]:
    """Add the control (special) and markup (visible) tokens a tokenizer lacks; returns them."""
    vocab = tok.get_vocab(with_added_tokens=True)
    control = [t for t in tokens.control() if t not in vocab]
    markup = [t for t in tokens.markup() if t not in vocab]
    if control:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    if markup:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in markup])
    return control + markup


def wrap_tokenizer(backend: Tokenizer, tokens: SpecialTokens, chat_template: str,
                   model_max_length: int) -> PreTrainedTokenizerFast:
    """The transformers tokenizer saved with the model: named image tokens, ChatML eos, no BOS.

    The named image tokens (`image_token`, `image_break_token`, `image_end_token`) are what the
    processor reads; eos is the turn end, so generation stops after one assistant turn.
    """
    add_markup_tokens(backend, tokens)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=None, eos_token=tokens.im_end, pad_token=tokens.pad,
        unk_token=None, model_max_length=model_max_length, padding_side="right",
        extra_special_tokens={"image_token": tokens.image, "image_break_token": tokens.image_break,
                              "image_end_token": tokens.image_end},
        chat_template=chat_template)
    check_tokenizer(tok, tokens)
    return tok


def check_tokenizer(tok, tokens: SpecialTokens) -> None:
    """Each special token must be one id, and plain text must not gain tokens it did not have."""
    for t in tokens.all():
        ids = tok.encode(t, add_special_tokens=False)
        if len(ids) != 1:
            raise TokenizerError(f"token {t!r} encodes to {len(ids)} ids {ids}, expected 1")
    ids = tok.encode("a", add_special_tokens=True)
    if any(i in tok.all_special_ids for i in ids):
        raise TokenizerError(f"plain text gains special tokens on encode: {ids}; the chat template "
                             f"adds turn markers, the tokenizer must not add BOS/EOS itself")


def tokenizer_stats(tok, holdout: list[str]) -> dict:
    """Compression on held-out corpus texts: bytes, characters and words per token."""
    n_tokens = n_bytes = n_chars = n_words = 0
    started = time.perf_counter()
    for text in holdout:
        n_tokens += len(tok.encode(text, add_special_tokens=False))
        n_bytes += len(text.encode("utf-8"))
        n_chars += len(text)
        n_words += len(WORD_RE.findall(text))
    seconds = time.perf_counter() - started
    per = max(n_tokens, 1)
    return {"vocab_size": len(tok), "holdout_texts": len(holdout), "holdout_tokens": n_tokens,
            "bytes_per_token": round(n_bytes / per, 4), "chars_per_token": round(n_chars / per, 4),
            "tokens_per_word": round(n_tokens / max(n_words, 1), 4),
            "_encode_mb_per_s": n_bytes / 1e6 / seconds if seconds > 0 else 0.0}
