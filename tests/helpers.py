"""Helpers shared by several test modules: a free local port, and the pieces of the tiny
random Qwen2 models that stand in for a real one where a test needs a model that loads in
a second."""

from __future__ import annotations

import socket

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_tokenizer(texts: list[str], vocab_size: int, template: str):  # noqa: ANN201
    """A byte-level BPE trained on ``texts`` with Qwen2's special tokens and chat
    ``template``: ``(raw tokenizer, transformers tokenizer)``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = template
    return tk, tok


def tiny_qwen2(tok, hidden: int = 64, context: int = 1024):  # noqa: ANN001, ANN201
    """A random two-layer Qwen2 for ``tok`` (seeded: the same weights every time)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                      tie_word_embeddings=False, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).eval()
