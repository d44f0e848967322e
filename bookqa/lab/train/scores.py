"""Differentiable QR scores for training.

The same quantity QRRanker ranks by (bookqa/rerank/qr.py, ``aggregate="sum"``, no calibration)::

    s(c) = Σ_{h∈H_QR} (1/|Q|) Σ_{t∈Q} Σ_{j∈c} A_h[t, j]

computed with gradients: the forward runs layer by layer up to the deepest layer holding a QR head (the
deepest one attention-only), and in each QR layer the capture attention of bookqa/rerank/readout.py
computes softmax(q·Kᵀ/√d) for the question rows of the selected heads only, from the model's own
post-RoPE q/k — O(heads × |Q| × N), never an N × N matrix (the layer output itself comes from the
ordinary SDPA kernel). With ``checkpointing`` each decoder layer is recomputed in the backward pass
instead of keeping its activations (torch.utils.checkpoint, non-reentrant; the capture is re-entered
inside the recomputation, so the recomputed rows are the same tensors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ...errors import InputError, ModelError
from ...rerank.heads import HeadSet
from ...rerank.blocks import BlockSequence, ChunkBlock, QuestionBlock, block_sequence, chunk_block, prefix_ids, \
    question_block
from ...rerank.prompt import BuiltPrompt, PromptLayout, build_prompt
from ...rerank.readout import cache_holding, capturing, check_supported, decoder_of, run_layers


@dataclass
class QuestionSidePrompt:
    """The cached layout in its pieces (``attention="question"``): the shared prefix and the chunk blocks,
    whose keys/values come from the base weights, and the question block, the only tokens run with the
    adapter."""

    prefix_ids: list[int]
    chunks: list[ChunkBlock]
    question_block: QuestionBlock

    @property
    def input_ids(self) -> list[int]:
        return self.prefix_ids + [t for c in self.chunks for t in c.input_ids] + self.question_block.input_ids

    @property
    def n_tokens(self) -> int:
        return len(self.prefix_ids) + sum(len(c.input_ids) for c in self.chunks) + len(self.question_block.input_ids)

    @property
    def candidates(self) -> list[ChunkBlock]:
        return self.chunks

    @property
    def block_positions(self) -> int:
        """The question starts one position past the longest chunk block (as blocks.py lays it out)."""
        return max(len(c.input_ids) for c in self.chunks)


class QRScorer:
    """Candidate scores of one prompt as a differentiable (n_candidates,) float32 tensor."""

    def __init__(self, model, tokenizer, heads: HeadSet, layout: PromptLayout = PromptLayout(),
                 checkpointing: bool = True, autocast_dtype: Optional[torch.dtype] = None, attention: str = "full"):
        check_supported(model)
        self.model = model  # the decoder model itself (LoRA layers, if any, are injected in place)
        self.decoder = decoder_of(model)
        self.tokenizer = tokenizer
        self.heads = heads
        self.layout = layout
        self.checkpointing = checkpointing
        self.autocast_dtype = autocast_dtype  # bf16 mixed precision on CUDA; None = the weights' dtype
        self.attention = attention  # full | block | question (the cached-chunk layout, rerank/blocks.py)
        self.base_kv = None  # a BaseBlockKV (basekv.py), set before scoring when attention == "question"
        self.by_layer = heads.by_layer()
        self.deepest = heads.deepest_layer
        n_layers = len(self.decoder.layers)
        heads.validate_for(n_layers, self.decoder.config.num_attention_heads)
        self.max_positions = int(getattr(self.decoder.config, "max_position_embeddings", 0) or 0)

    @property
    def device(self) -> torch.device:
        return self.decoder.embed_tokens.weight.device

    def prompt(self, question: str, candidates: Sequence[str], prefix: Optional[str] = None):
        """The full prompt (a BuiltPrompt), or with ``attention="block"`` the cached layout as one sequence (a
        BlockSequence; a summary prefix has no place in it and is left out, as cached ranking leaves it out)."""
        if self.attention == "block":
            prompt = block_sequence(self.tokenizer, question, candidates, self.layout)
        elif self.attention == "question":
            prompt = QuestionSidePrompt(prefix_ids(self.tokenizer, self.layout),
                                        [chunk_block(self.tokenizer, c, self.layout) for c in candidates],
                                        question_block(self.tokenizer, question, self.layout))
        else:
            prompt = build_prompt(self.tokenizer, question, candidates, prefix, self.layout)
        if self.max_positions and prompt.n_tokens > self.max_positions:
            raise InputError(f"the training prompt has {prompt.n_tokens} tokens, more than the model's "
                             f"{self.max_positions}; use fewer or shorter candidates")
        return prompt

    def scores(self, prompt: BuiltPrompt) -> torch.Tensor:
        """s(c) for each candidate of ``prompt`` (gradients flow when grad mode is on)."""
        if self.autocast_dtype is not None:
            with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
                return self._scores(prompt)
        return self._scores(prompt)

    def _question_side_scores(self, prompt: QuestionSidePrompt) -> torch.Tensor:
        """The cached pass with gradients: the prefix's and the chunks' keys/values from the base weights
        (no gradient), the question block through layers 0..L of the trained model after them."""
        if self.base_kv is None:
            raise ModelError("question-side scoring needs the base model's block keys/values (QRScorer.base_kv)")
        pieces = [self.base_kv.prefix(prompt.prefix_ids)]
        spans, pos = [], len(prompt.prefix_ids)
        for block in prompt.chunks:
            rows = self.base_kv.block(prompt.prefix_ids, block.input_ids)
            pieces.append(rows)
            spans.append((pos + block.text_tokens[0], pos + block.text_tokens[1]))
            pos += rows.shape[3]
        kv = torch.cat(pieces, dim=3)
        cache = cache_holding(self.model, kv)
        total = kv.shape[3]
        q = prompt.question_block
        rows = [total + t for t in range(*q.question)]
        segments = torch.full((total + len(q.input_ids),), -1, dtype=torch.long, device=self.device)
        for i, (a, b) in enumerate(spans):
            segments[a:b] = i
        n = len(spans)
        with capturing(self.model, self.by_layer, rows, segments=segments, n_segments=n,
                       skip_output=(self.deepest,)) as capture:
            run_layers(self.decoder, torch.tensor([q.input_ids], dtype=torch.long), self.deepest, cache=cache,
                       first_position=len(prompt.prefix_ids) + prompt.block_positions)
        missing = set(self.by_layer) - set(capture.row_sum)
        if missing:
            raise ModelError(f"layers {sorted(missing)} did not dispatch through the attention interface; "
                             f"this model architecture is not supported by QR training")
        out = torch.zeros(n, dtype=torch.float32, device=self.device)
        for layer in sorted(self.by_layer):
            out = out + capture.row_sum[layer].mean(dim=1).sum(dim=0)
        return out

    def _scores(self, prompt: BuiltPrompt) -> torch.Tensor:
        if isinstance(prompt, QuestionSidePrompt):
            return self._question_side_scores(prompt)
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        decoder, config, device = self.decoder, self.decoder.config, self.device
        ids = torch.tensor([prompt.input_ids], dtype=torch.long, device=device)
        rows = list(range(*prompt.question))
        segments = torch.from_numpy(prompt.segment_map()).to(device)
        n = len(prompt.candidates)
        t_len = ids.shape[1]
        hidden = decoder.embed_tokens(ids)
        position_ids = torch.arange(t_len, device=device)[None]
        layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * len(decoder.layers))
        if isinstance(prompt, BlockSequence):
            # Every candidate at one position range, seeing the prefix and itself: the question rows still see
            # every earlier key, as the capture's softmax assumes.
            if "sliding_attention" in layer_types[:self.deepest + 1]:
                raise ModelError("block attention training does not support sliding-window layers")
            masks = {"full_attention": prompt.attention_mask().to(device)}
            position_ids = torch.tensor([prompt.position_ids], dtype=torch.long, device=device)
        else:
            with capturing(self.model, {}, rows):  # masks for the capture attention, as read_out builds them
                mask_kwargs = dict(config=config, inputs_embeds=hidden, attention_mask=None, cache=None,
                                   position_ids=position_ids)
                masks = {"full_attention": create_causal_mask(**mask_kwargs)}
                if "sliding_attention" in layer_types[:self.deepest + 1]:
                    masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)
        position_embeddings = decoder.rotary_emb(hidden, position_ids)

        def run_layer(i: int, hidden: torch.Tensor):
            layer = decoder.layers[i]
            heads = self.by_layer.get(i)
            last = i == self.deepest
            with capturing(self.model, {i: heads} if heads else {}, rows, segments=segments, n_segments=n,
                           skip_output=(i,) if last else ()) as capture:
                if last:
                    # Only the attention of the deepest layer is read; its output and MLP are not needed.
                    layer.self_attn(hidden_states=layer.input_layernorm(hidden),
                                    position_embeddings=position_embeddings, attention_mask=masks[layer_types[i]],
                                    position_ids=position_ids, cache=None, use_cache=False)
                    out = None
                else:
                    out = layer(hidden, attention_mask=masks[layer_types[i]], position_ids=position_ids,
                                cache=None, use_cache=False, position_embeddings=position_embeddings)
            return out, capture.row_sum.get(i)

        total = torch.zeros(n, dtype=torch.float32, device=device)
        found = set()
        for i in range(self.deepest + 1):
            if self.checkpointing and torch.is_grad_enabled() and i < self.deepest:
                from torch.utils.checkpoint import checkpoint

                hidden_out, row_sum = checkpoint(run_layer, i, hidden, use_reentrant=False)
            else:
                hidden_out, row_sum = run_layer(i, hidden)
            if row_sum is not None:
                # (heads, rows, n): mean over the question rows, sum over the layer's selected heads
                total = total + row_sum.mean(dim=1).sum(dim=0)
                found.add(i)
            if hidden_out is not None:
                hidden = hidden_out
        missing = set(self.by_layer) - found
        if missing:
            raise ModelError(f"layers {sorted(missing)} did not dispatch through the attention interface; "
                             f"this model architecture is not supported by QR training")
        return total
