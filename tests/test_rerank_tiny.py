"""Tiny randomly initialised Qwen2/Qwen3 models and a byte-level BPE tokenizer trained on the spot,
shared by the rerank tests (built in well under a second, nothing downloaded)."""
from __future__ import annotations

import random
import time
from functools import lru_cache

import pytest
import torch

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

WORDS = ("the a of and to in was he she it that his her with as for had on at by they but not be this from "
         "ship whale captain sea night house river garden letter sister doctor mother village road window "
         "Silas Thorne Mara Quill Ada Brook Felix Marsh who what where when why which query chunks retrieved "
         "answer find use here are some summaries help user paragraphs N/A").split()


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) + rng.choice([".", "?", "!"]))
    lines.append("Here are some retrieved chunks: [1] [2] [3] [12] Query: Use the retrieved chunks to answer "
                 "the user's query. Find the retrieved chunks that answer the query.")
    return lines


@lru_cache(maxsize=4)
def tiny_tokenizer(chat: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=specials[1:])
    if chat:
        fast.chat_template = CHATML
    return fast


def tiny_model(kind: str = "qwen3", layers: int = 3, seed: int = 0, attn: str = "sdpa"):
    from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                              Qwen3ForCausalLM)

    torch.manual_seed(seed)
    common = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                  tie_word_embeddings=True, attn_implementation=attn)
    if kind == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=16, **common))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(head_dim=16, **common))
    else:
        raise ValueError(kind)
    # Random init gives near-uniform attention; sharpen q/k so the read-out is tested on peaked rows.
    # Qwen3 RMS-normalises q and k, so its scale sits in the norm weights; Qwen2 scales the projections.
    with torch.no_grad():
        for layer in model.model.layers:
            attn = layer.self_attn
            if kind == "qwen3":
                attn.q_norm.weight.mul_(2.0)
                attn.k_norm.weight.mul_(2.0)
            else:
                attn.q_proj.weight.mul_(15.0)
                attn.k_proj.weight.mul_(15.0)
    return model.float().eval()


def eager_attentions(model, input_ids: torch.Tensor):
    """Reference: full attention matrices from eager attention (tests only)."""
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=input_ids, output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation("sdpa")
    return out.attentions


def test_tiny_fixtures_build_fast():
    import transformers  # noqa: F401  (import time is not build time)
    from transformers import PreTrainedTokenizerFast, Qwen3ForCausalLM  # noqa: F401

    tiny_tokenizer.cache_clear()
    start = time.perf_counter()
    tok = tiny_tokenizer()
    model = tiny_model("qwen3")
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0  # ~0.1 s on an idle machine; generous for a loaded shared CPU
    text = "Silas Thorne keeps a whale."
    assert tok.decode(tok(text)["input_ids"]) == text
    assert model.config.num_key_value_heads == 2


@pytest.fixture(params=["qwen3", "qwen2"])
def tiny(request):
    return tiny_model(request.param), tiny_tokenizer()
