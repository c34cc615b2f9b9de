"""A character-level tokenizer saved as a standard ``tokenizer.json``.

Used by the tiny random-weight test models and by models trained from scratch
(`interp train`), so that both are ordinary Hugging Face model directories.
One character = one token; no BOS is ever added (as in the paper's from-scratch setup).
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
# 94 printable ASCII characters + space + newline, as in the authors' vocabulary.
CHARACTERS = string.ascii_letters + string.digits + string.punctuation + " \n"


def build_char_tokenizer(characters: str = CHARACTERS) -> PreTrainedTokenizerFast:
    """Return a fast tokenizer mapping each character in ``characters`` to one id.

    Unknown characters map to ``<unk>``; decoding concatenates characters exactly.
    """
    if len(set(characters)) != len(characters):
        raise ValueError("characters must be distinct")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in characters:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Split into single characters (newlines included), keep each one as its own token.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.padding_side = "left"
    return tokenizer


def save_char_tokenizer(directory: str | Path, characters: str = CHARACTERS) -> PreTrainedTokenizerFast:
    """Build the character tokenizer and save it (``tokenizer.json`` + config) to ``directory``."""
    tokenizer = build_char_tokenizer(characters)
    tokenizer.save_pretrained(str(directory))
    return tokenizer
