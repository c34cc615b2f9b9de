"""Tiny random-weight models of twelve architecture families, built from ``transformers`` configs.

Each is a 2-layer, d_model 64 model with the bundled character tokenizer, written once per
session as an ordinary local HF directory (no downloads), so every analysis loads it exactly
as it would load a user's model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma", "gemma2", "gemma3", "olmo", "olmo2",
                 "gpt2", "gpt_neox")
# Families with a sliding attention window: their tiny model gets a window shorter than the
# test prompts, so KV-reuse scoring is checked across the window.
SLIDING = {"gemma2": 24, "gemma3": 24, "mistral": 24}


def tiny_config(arch: str, vocab_size: int, pad: int, bos: int, eos: int) -> Any:
    """A 2-layer, d_model 64 config of ``arch`` (grouped-query attention where the family has it)."""
    import transformers as tf

    special = dict(vocab_size=vocab_size, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos)
    llama_like = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False, **special)
    if arch == "llama":
        return tf.LlamaConfig(**llama_like)
    if arch == "qwen2":
        return tf.Qwen2Config(**llama_like)
    if arch == "qwen3":
        return tf.Qwen3Config(head_dim=16, **llama_like)
    if arch == "mistral":
        return tf.MistralConfig(sliding_window=SLIDING["mistral"], **llama_like)
    if arch == "phi3":
        return tf.Phi3Config(original_max_position_embeddings=2048, sliding_window=None, **llama_like)
    if arch == "gemma":
        return tf.GemmaConfig(head_dim=16, **llama_like)
    if arch == "gemma2":
        return tf.Gemma2Config(head_dim=16, query_pre_attn_scalar=16, sliding_window=SLIDING["gemma2"],
                               final_logit_softcapping=30.0, attn_logit_softcapping=50.0, **llama_like)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(head_dim=16, query_pre_attn_scalar=16, sliding_window=SLIDING["gemma3"],
                                   layer_types=["sliding_attention", "full_attention"], **llama_like)
    if arch == "olmo":
        return tf.OlmoConfig(**llama_like)
    if arch == "olmo2":
        return tf.Olmo2Config(**llama_like)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=2048, n_inner=128,
                             tie_word_embeddings=True, **special)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                max_position_embeddings=2048, rotary_pct=0.5, use_parallel_residual=True,
                                tie_word_embeddings=False, **special)
    raise ValueError(f"unknown architecture {arch!r}")


def build_tiny(arch: str, out: Path, seed: int = 0) -> Path:
    """Write a seeded random-weight ``arch`` model with the character tokenizer to ``out``."""
    from transformers import AutoModelForCausalLM

    from interp.char_tokenizer import build_char_tokenizer

    if (out / "config.json").exists():
        return out
    tokenizer = build_char_tokenizer()
    config = tiny_config(arch, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                         tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        # Larger-than-default init so outputs are peaked; norms get non-trivial weights and biases
        # so a norm applied the wrong way (w vs 1 + w, missing centring) shows in the numbers.
        for name, p in model.named_parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.2)
            elif "norm" in name or "ln" in name:
                torch.nn.init.normal_(p, mean=0.0 if "bias" in name else 0.5, std=0.3)
            else:
                torch.nn.init.normal_(p, std=0.05)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
