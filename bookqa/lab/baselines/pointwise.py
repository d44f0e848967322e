"""A pointwise baseline with the reranker's backbone: every (question, passage) pair is scored on its own
by how much the causal LM prefers "yes" over "no" as its first reply token::

    user:      Does the passage answer the question? Answer yes or no.
               Question: {question}
               Passage: {passage}
    assistant: ▌                      score = logit("yes") − logit("no") at this position

This is the Qwen3-Reranker style of scoring, run out of the box (no training). Unlike QR scores, these
scores are comparable across calls. Pairs are batched (sorted by length, left-padded, position ids
counted over the real tokens only, so a batched score equals the pair scored alone up to float error);
only the last position's two logits are computed, not the whole vocabulary at every position.
"""
from __future__ import annotations

import threading
import time
from typing import Optional, Sequence, Union

import numpy as np

from ...errors import ModelError
from ...progress import Progress, no_progress
from ...rerank.base import Passage, RankedResults, Reranker, make_results, rank_inputs
from ...settings import Settings
from ..settings import EvalSettings

INSTRUCTION = "Does the passage answer the question? Answer yes or no."
YES, NO = "yes", "no"


class PointwiseReranker(Reranker):
    """Yes/no relevance logits of a causal LM, one pair at a time (batched)."""

    name = "pointwise"

    def __init__(self, model: Union[str, tuple, None] = None, settings: Optional[Settings] = None,
                 device: str = "auto", dtype: str = "auto", batch_size: Optional[int] = None,
                 max_passage_tokens: int = 1024, progress: Progress = no_progress):
        import torch

        from ...weights import resolve_device
        from ...rerank.qr import load_model, load_tokenizer

        settings = settings or Settings.from_env()
        self.batch_size = int(batch_size or EvalSettings.from_env().pointwise_batch_size)
        self.max_passage_tokens = max_passage_tokens
        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        if model is None:
            model = settings.reranker_model
        if isinstance(model, (tuple, list)):
            self.model, self.tokenizer = model
            self.model_name = getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__
            self.device = str(next(self.model.parameters()).device)
        else:
            from ...rerank.adapter import model_source

            self.model_name = str(model)
            source, adapter = model_source(self.model_name, settings, progress)
            self.device = resolve_device(device if device != "auto" else settings.device)
            progress("loading pointwise model", 0, 1)
            self.model = load_model(source, device=self.device, dtype=dtype if dtype != "auto" else settings.dtype,
                                    lm_head=True, adapter=adapter)
            self.tokenizer = load_tokenizer(source)
            progress("loading pointwise model", 1, 1)
        self.yes_id, self.no_id = self._answer_token(YES), self._answer_token(NO)
        if self.yes_id == self.no_id:
            raise ModelError(f"the tokenizer of {self.model_name} gives 'yes' and 'no' the same first token")
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        self._lock = threading.Lock()

    def _answer_token(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ModelError(f"the tokenizer of {self.model_name} cannot encode {word!r}")
        return int(ids[0])  # one token in Qwen-style vocabularies; otherwise the first piece decides

    def prompt(self, query: str, passage: str) -> str:
        user = f"{INSTRUCTION}\n\nQuestion: {query.strip()}\n\nPassage: {passage.strip()}"
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                      add_generation_prompt=True)
        return f"{user}\n\nAnswer:"

    def _encode(self, query: str, passage: str) -> list[int]:
        ids = self.tokenizer(passage, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_passage_tokens:  # keep one pair's cost bounded; relevance is usually early
            passage = self.tokenizer.decode(ids[:self.max_passage_tokens])
        text = self.prompt(query, passage)
        special = not getattr(self.tokenizer, "chat_template", None)
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def scores(self, query: str, texts: Sequence[str]) -> tuple[np.ndarray, dict]:
        """logit(yes) − logit(no) per passage, in input order, and run information."""
        import torch

        encoded = [self._encode(query, t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out = np.zeros(len(texts), dtype=np.float64)
        t0 = time.perf_counter()
        batches = 0
        with self._lock, torch.inference_mode():
            for a in range(0, len(order), self.batch_size):
                idx = order[a:a + self.batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):  # left padding: every row's last token is at the end
                    seq = encoded[i]
                    ids[r, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                    mask[r, width - len(seq):] = 1
                positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                    position_ids=positions.to(self.device), use_cache=False,
                                    logits_to_keep=1).logits[:, -1, :]
                diff = (logits[:, self.yes_id].float() - logits[:, self.no_id].float()).cpu().numpy()
                for r, i in enumerate(idx):
                    out[i] = float(diff[r])
                batches += 1
        seconds = time.perf_counter() - t0
        info = {"pairs": len(texts), "batches": batches, "batch_size": self.batch_size,
                "tokens": int(sum(len(e) for e in encoded)), "timings": {"forward": seconds}}
        return out, info

    def rank(self, query: str, chunks: Sequence[Passage], prefix: Optional[str] = None) -> RankedResults:
        """Score each candidate alone. ``prefix`` is not shown to the model (a pointwise scorer sees one
        passage at a time); it is accepted to keep the Reranker contract."""
        texts, ids = rank_inputs(query, chunks)
        if not texts:
            return make_results(query, [], [], info={"reranker": self.name})
        t0 = time.perf_counter()
        scores, info = self.scores(query, texts)
        timings = info.pop("timings")
        timings["total"] = time.perf_counter() - t0
        info.update({"reranker": self.name, "model": self.model_name, "device": self.device,
                     "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                     "prefix_used": False})
        return make_results(query, scores.tolist(), ids, timings=timings, info=info)
