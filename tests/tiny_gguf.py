"""A tiny llama GGUF, written on the spot with the ``gguf`` package, so fast tests run the real llama.cpp
generator (bookqa.generate.local) in milliseconds, on the tiny byte-level BPE vocabulary of
test_rerank_tiny.

Random weights write nonsense. With ``answer`` the output head is set so that greedy decoding writes that
text whatever the prompt: every embedding shares one direction that the answer's first token reads, and
each answer token's successor (then end-of-turn, or with ``repeat`` the first token again) reads that
token's own direction; the decoder layers are left nearly silent so the last token decides the next.
That gives fast tests a generator that cites (and, repeating, one that streams for as long as asked).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from test_rerank_tiny import CHATML, tiny_tokenizer


ANSWER = "The answer is in the letter [1]."  # its tokens are all different: each has one successor


def write_tiny_gguf(path: Path, answer: Optional[str] = ANSWER, repeat: bool = False, layers: int = 2, hidden: int = 64, heads: int = 4,
                    kv_heads: int = 2, ffn: int = 128, context: int = 4096, seed: int = 0) -> Path:
    import gguf

    tok = tiny_tokenizer()
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    specials = {t.content: i for i, t in tok.added_tokens_decoder.items()}
    n_vocab = max(max(model["vocab"].values()), max(specials.values())) + 1
    tokens = [""] * n_vocab
    for text, i in {**model["vocab"], **specials}.items():
        tokens[i] = text
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(specials["<|endoftext|>"])
    writer.add_eos_token_id(specials["<|im_end|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.08) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    head_dim = hidden // heads
    embeddings = weight(n_vocab, hidden, scale=1.0)
    output = weight(n_vocab, hidden, scale=1.0)
    layer_out_scale = 0.08
    if answer is not None:
        chain = tok.encode(answer, add_special_tokens=False)
        if len(set(chain)) != len(chain):
            raise ValueError(f"every token of the answer must differ: {answer!r}")
        shared = rng.standard_normal(hidden)
        shared /= np.linalg.norm(shared)
        embeddings += 4.0 * shared.astype(np.float32)
        output = weight(n_vocab, hidden, scale=0.01)
        output[chain[0]] = 4.0 * shared
        last = chain[0] if repeat else specials["<|im_end|>"]  # repeat: the answer again, up to max_tokens
        for here, after in zip(chain, chain[1:] + [last]):
            own = embeddings[here] - 4.0 * shared
            output[after] = 4.0 * own / np.linalg.norm(own)
        layer_out_scale = 0.002
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    # an output matrix of its own: tied to the embeddings, each token would mostly predict itself
    writer.add_tensor("output.weight", output)
    for b in range(layers):
        writer.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{b}.attn_q.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{b}.attn_k.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{b}.attn_v.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{b}.attn_output.weight", weight(hidden, hidden, scale=layer_out_scale))
        writer.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{b}.ffn_gate.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{b}.ffn_up.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{b}.ffn_down.weight", weight(hidden, ffn, scale=layer_out_scale))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
