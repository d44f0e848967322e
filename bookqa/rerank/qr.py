"""QRRanker: score candidates by the attention that selected "QR heads" send from the question to them.

One prefill of a causal LM over ``[instruction] [summaries] [1] c1 … [n] cn [late instruction] Query: q``
(see prompt.py), stopped after the deepest layer holding a selected head (readout.py). For head h and
candidate c::

    s_h(c) = (1/|Q|) Σ_{t∈Q} Σ_{j∈c} A_h[t, j]          (aggregate="sum", the paper)
    s_h(c) = (1/|Q|) Σ_{t∈Q} max_{j∈c} A_h[t, j]        (aggregate="max", ColBERT-style variant)
    s(c)   = Σ_h s_h(c)

With ``calibrate=True`` the same scores for the null question "N/A" are subtracted (QRHead's
calibration). Everything before the question is byte-identical in both prompts, so the KV cache of
that prefix is reused and only the null suffix is run a second time.

Order-robust options (orders.py): ``debias="position"`` corrects each candidate's normalised score by
the prior its prompt position gets on its own (estimated with ``bookqa heads prior``, stored in the
heads file), ``permutations=N`` scores the candidates under N orders and averages (0, the default: two
orders on a GPU for untrained heads, else one), ``refine=M`` scores the top M once more in a short
reversed prompt (-1, the default: 5 when one order is scored, else off).

Scores are listwise: they are comparable only within one call (all candidates share one softmax).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, InputError, ModelError
from ..progress import Progress, no_progress
from ..settings import Settings
from .base import Passage, RankedResults, Reranker, make_results, rank_inputs
from .config import QRRankerConfig
from .heads import HeadSet, head_name, parse_head, resolve_heads
from .prompt import BuiltPrompt, PromptLayout, build_prompt
from .orders import ScorePass, pass_timings, prior_for, rank_in_orders, score_pass
from .readout import check_supported, decoder_of, new_cache, read_out

NULL_QUERY = "N/A"
# Default dtype on CPU: bfloat16 where the CPU has native bf16 (see _cpu_has_bf16), where it ranks like float32
# at a fraction of the time; elsewhere bf16 matmuls are much slower, so float32 (docs/benchmarks.md, QR read-out).
CPU_DTYPE_WITH_BF16 = "bfloat16"
CPU_DTYPE_WITHOUT_BF16 = "float32"


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device == "mps":
            dtype = "float16"
        else:
            dtype = CPU_DTYPE_WITH_BF16 if _cpu_has_bf16() else CPU_DTYPE_WITHOUT_BF16
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ConfigError(f"unknown dtype {dtype!r}") from None


def _stored_dtype(config):
    """The dtype a checkpoint's weights are stored in (its config's ``dtype``/``torch_dtype``), or None."""
    import torch

    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(stored, str):
        stored = getattr(torch, stored, None)
    return stored if isinstance(stored, torch.dtype) else None


def load_model(source: str, *, device: str = "cpu", dtype: str = "auto", keep_layers: Optional[int] = None,
               lm_head: bool = False, adapter=None):
    """Load the decoder stack (no LM head) of a causal LM for the read-out, with SDPA attention, in eval mode.

    ``keep_layers``: build and load only the first N decoder layers (the read-out never runs later ones).
    A MindscapeRAG/QRRanker checkpoint (architecture ``Qwen3Model``) loads with the standard Qwen3 classes.
    ``lm_head=True`` loads the whole causal LM instead (the pointwise baseline reads its logits).
    ``adapter`` (adapter.py, from ``model_source``): trained LoRA weights merged in once, after loading.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(source)
    if keep_layers is not None and keep_layers < config.num_hidden_layers:
        config.num_hidden_layers = keep_layers
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types)[:keep_layers]
        if hasattr(config, "max_window_layers") and config.max_window_layers > keep_layers:
            config.max_window_layers = keep_layers
    torch_dtype = resolve_dtype(dtype, device)
    load_dtype = torch_dtype
    if adapter is not None and _stored_dtype(config) not in (None, torch_dtype):
        # Merge before rounding: a float32 checkpoint loaded in bfloat16 and then merged would be rounded
        # twice (weights, then weights + delta). The load then holds float32 weights until the cast: the
        # size of a float32 checkpoint, twice that of a bfloat16 one asked for in float16.
        load_dtype = torch.float32
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the skipped LM head / later layers are reported as unused weights
    try:
        auto_class = AutoModelForCausalLM if lm_head else AutoModel
        model = auto_class.from_pretrained(source, config=config, dtype=load_dtype, attn_implementation="sdpa")
    except OSError as exc:
        raise ModelError(f"cannot load model from {source}: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if adapter is not None:
        from .adapter import apply_adapter

        apply_adapter(model, adapter)
    if load_dtype != torch_dtype:
        for param in model.parameters():  # parameters only: buffers (rotary inv_freq) stay as loaded
            param.data = param.data.to(torch_dtype)
    model.to(device)
    model.eval()
    return model


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    if not getattr(tok, "is_fast", True):
        raise ModelError(f"the tokenizer of {source} is not a fast tokenizer; offsets are required")
    return tok


def choose_layout(heads: HeadSet, question_span: str = "auto", layout: Optional[PromptLayout] = None) -> PromptLayout:
    """The prompt layout: the argument, else the one the heads were detected with (recorded in the
    heads file), else the default; its question span: ``question_span`` unless "auto", else the layout's."""
    if layout is None:
        recorded = heads.detection.get("prompt_layout")
        if isinstance(recorded, dict):
            known = set(PromptLayout().to_json())
            layout = PromptLayout(**{k: v for k, v in recorded.items() if k in known})
        else:
            layout = PromptLayout()
    span = question_span if question_span and question_span != "auto" else layout.question_span
    return PromptLayout(**{**layout.to_json(), "question_span": span})


@dataclass(frozen=True)
class ResolvedRanker:
    """A configuration with its "auto" values decided for this machine, and what it was decided from."""

    config: QRRankerConfig  # nothing "auto" left but ``heads`` ("" = found by model)
    adapter: Any  # adapter.Adapter or None
    heads: Any  # heads.HeadSet


def adapter_label(adapter) -> str:
    """How a configuration names a resolved adapter: a shipped one by name, any other by its path."""
    from .adapter import SHIPPED_DIR

    if adapter is None:
        return "none"
    return adapter.path.name if adapter.path.parent == SHIPPED_DIR else str(adapter.path)


_FIND = object()  # resolve_config: look the adapter up (the default)


def resolve_config(config: QRRankerConfig, model_dir: Optional[str] = None, adapter: Any = _FIND,
                   heads=None) -> ResolvedRanker:
    """Decide the "auto" values as QRRanker does, without loading weights: the adapter (a trained
    directory named as the model is its own adapter), the heads (the argument, the heads file, else the
    adapter's or the model directory's own, else the shipped ones), the device, the dtype, the question
    span (the heads' detection record), the candidate orders (by device and whether the heads were
    trained) and the refinement (by the orders). ``adapter``: the one already found (None: look for
    the configured one), or leave it out to also treat a model directory holding an adapter as one."""
    from ..weights import resolve_device
    from .adapter import chosen_adapter, find_adapter
    from .orders import check_options, resolve_permutations, resolve_refine, trained_heads

    if adapter is _FIND or (adapter is None and config.adapter not in ("none", "off")):
        adapter = find_adapter(config.model) or chosen_adapter(config.model, config.adapter,
                                                               heads_given=bool(config.heads) or heads is not None)
    if heads is None:
        heads = resolve_heads(config.model, config.heads or None,
                              model_dir=str(adapter.path) if adapter is not None else model_dir)
    device = resolve_device(config.device)
    dtype = str(resolve_dtype(config.dtype, device)).removeprefix("torch.")
    span = choose_layout(heads, config.question_span).question_span
    permutations = resolve_permutations(config.permutations, device, trained_heads(heads))
    refine = resolve_refine(config.refine, permutations)
    check_options(config.debias, permutations, refine)
    resolved = config.replace(adapter=adapter_label(adapter), device=device, dtype=dtype, question_span=span,
                              permutations=permutations, refine=refine)
    return ResolvedRanker(resolved, adapter, heads)


def _as_headset(heads: Union[HeadSet, Sequence]) -> HeadSet:
    if isinstance(heads, HeadSet):
        return heads
    return HeadSet(heads=[parse_head(h) for h in heads], source="argument")


def _model_heads(config: QRRankerConfig) -> HeadSet:
    """The heads of a model passed in loaded: the configured heads file, else those known for its name."""
    return resolve_heads(config.model, config.heads or None, model_dir=None)


class QRRanker(Reranker):
    """Attention reranker over selected QR heads (see module docstring).

    Configured by a ``QRRankerConfig`` (``config=``), or by the settings with the keyword arguments
    overriding them; ``model`` may also be a loaded ``(model, tokenizer)`` pair, used as it is."""

    name = "qr"

    def __init__(self, model: Union[str, tuple] = None, heads: Union[HeadSet, Sequence, str, None] = None,
                 settings: Optional[Settings] = None, device: str = "auto", dtype: str = "auto",
                 question_span: Optional[str] = None, calibrate: Optional[bool] = None,
                 aggregate: Optional[str] = None, layout: Optional[PromptLayout] = None,
                 debias: Optional[str] = None, permutations: Optional[int] = None,
                 refine: Optional[int] = None, progress: Progress = no_progress,
                 config: Optional[QRRankerConfig] = None):
        import torch

        settings = settings or Settings.from_env()
        self.settings = settings
        loaded = model if isinstance(model, (tuple, list)) else None
        if config is None:
            model_name = None
            if loaded is not None:
                model_name = getattr(loaded[0].config, "_name_or_path", "") or type(loaded[0]).__name__
            elif model is not None:
                model_name = str(model)
            config = QRRankerConfig.from_settings(
                settings, model=model_name, heads=heads if isinstance(heads, str) else None,
                device=None if device == "auto" else device, dtype=None if dtype == "auto" else dtype,
                question_span=question_span, calibrate=calibrate, aggregate=aggregate, debias=debias,
                permutations=permutations, refine=refine)
        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        given_heads = None if heads is None or isinstance(heads, str) else _as_headset(heads)
        self.source: Optional[str] = None  # where the weights were loaded from (None: a model passed in)
        if loaded is not None:
            self.model, self.tokenizer = loaded
            self.device = str(next(self.model.parameters()).device)
            # a model passed in is used as it is: no adapter, its own device and dtype
            config = config.replace(adapter="none", device=self.device, dtype=self.dtype)
            resolved = resolve_config(config, adapter=None, heads=given_heads or _model_heads(config))
        else:
            from .adapter import model_source

            source, adapter = model_source(config.model, settings, progress)  # trained heads may be an adapter
            self.source = source
            resolved = resolve_config(config, model_dir=source, adapter=adapter, heads=given_heads)
            self.device = resolved.config.device
            progress("loading reranker model", 0, 1)
            self.model = load_model(source, device=self.device, dtype=resolved.config.dtype,
                                    keep_layers=resolved.heads.deepest_layer + 1, adapter=resolved.adapter)
            self.tokenizer = load_tokenizer(source)
            progress("loading reranker model", 1, 1)
        self.config = resolved.config
        self.model_name = self.config.model
        self.adapter, self.heads = resolved.adapter, resolved.heads
        self.aggregate, self.calibrate, self.debias = self.config.aggregate, self.config.calibrate, self.config.debias
        self.permutations, self.refine = self.config.permutations, self.config.refine
        self.layout = choose_layout(self.heads, self.config.question_span, layout)
        self.config = self.config.replace(question_span=self.layout.question_span)
        check_supported(self.model)
        decoder = decoder_of(self.model)
        cfg = decoder.config
        self.heads.validate_for(max(cfg.num_hidden_layers, len(decoder.layers)), cfg.num_attention_heads)
        if self.heads.deepest_layer >= len(decoder.layers):
            raise ModelError(f"the loaded model has {len(decoder.layers)} layers; head set needs layer "
                             f"{self.heads.deepest_layer}")
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 0) or 0)
        self._lock = threading.Lock()
        # The prior must have been estimated with this scoring (calibration, aggregation, span).
        self.position_prior = prior_for(self, self.calibrate) if self.debias == "position" else None

    # ------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def prompt(self, query: str, texts: Sequence[str], prefix: Optional[str] = None) -> BuiltPrompt:
        return build_prompt(self.tokenizer, query, texts, prefix, self.layout)

    def head_scores(self, query: str, texts: Sequence[str], prefix: Optional[str] = None,
                    heads: Optional[Sequence[tuple[int, int]]] = None,
                    spans: Optional[Sequence[str]] = None, calibrate: Optional[bool] = None,
                    keep_null: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        """Per-head candidate scores, shape (len(heads), len(texts)) with heads in the given (or set)
        order, plus run information (tokens, timings). With ``spans`` (e.g. ("question", "query")) the
        scores of each question-span convention come from the same forward pass, shape
        (len(spans), len(heads), len(texts)). Used by :meth:`rank` and by head detection.

        ``calibrate`` overrides the ranker's setting for this call. With ``keep_null`` the null
        question's scores are not subtracted: the scores returned are the plain ones and
        ``info["null_scores"]`` holds the null question's (same shape), so one pass serves both."""
        self._require_full_prompt_adapter()
        calibrate = self.calibrate if calibrate is None else bool(calibrate)
        heads = list(heads) if heads is not None else list(self.heads.heads)
        span_names = list(spans) if spans is not None else [self.layout.question_span]
        by_layer = heads_by_layer(heads)
        t0 = time.perf_counter()
        prompt = self.prompt(query, texts, prefix)
        if self.max_positions and prompt.n_tokens > self.max_positions:
            raise InputError(f"the reranking prompt has {prompt.n_tokens} tokens, more than the model's "
                             f"{self.max_positions}; pass fewer or shorter candidates")
        t1 = time.perf_counter()
        n = len(texts)
        cache = new_cache(self.model) if calibrate else None
        with self._lock:
            scores, res = self._run(prompt, 0, by_layer, heads, span_names, n, cache)
            info: dict[str, Any] = {"prompt_tokens": prompt.n_tokens,
                                    "question_tokens": prompt.question[1] - prompt.question[0],
                                    "tokens_run": [res.tokens_run], "layers_run": res.layers_run}
            timings = {"prompt": t1 - t0, "forward": res.seconds}
            if calibrate:
                null = self.prompt(NULL_QUERY, texts, prefix)
                keep = _reusable_prefix(prompt, null, span_names)
                _crop_cache(cache, keep)  # the KV of everything before the question is reused as is
                null_scores, res0 = self._run(null, keep, by_layer, heads, span_names, n, cache)
                if keep_null:
                    info["null_scores"] = null_scores if spans is not None else null_scores[0]
                else:
                    scores = scores - null_scores
                info["tokens_run"].append(res0.tokens_run)
                info["null_reused_tokens"] = keep
                timings["calibrate"] = res0.seconds
        timings["total"] = time.perf_counter() - t0
        info["timings"] = timings
        return (scores if spans is not None else scores[0]), info

    def _require_full_prompt_adapter(self) -> None:
        if self.adapter is not None and self.adapter.applies_to == "question":
            raise ConfigError(f"the adapter {self.adapter.path} was trained for the question of the cached-chunk "
                              f"pass only; rank with it through BOOKQA_QR_MODE=cached (the full prompt has no use for it)")

    def token_attention(self, query: str, texts: Sequence[str], prefix: Optional[str] = None) -> list[np.ndarray]:
        """Where in each text the QR heads look: one read-out of the ranker's prompt over ``texts`` alone, and
        for each text an array of ``len(text)`` floats, each token's attention from the question rows (the
        mean over the heads of its summed weight; calibrated like the scores when the ranker calibrates)
        spread evenly over the token's characters. A span's sum is the share of attention that span drew,
        so a sentence's sum is scored as a chunk's is. The answer step keeps the sentences that draw the
        most (bookqa/focus.py)."""
        self._require_full_prompt_adapter()
        if not texts:
            return []
        by_layer = heads_by_layer(self.heads.heads)
        span = self.layout.question_span
        prompt = self.prompt(query, texts, prefix)
        if self.max_positions and prompt.n_tokens > self.max_positions:
            raise InputError(f"the focus prompt has {prompt.n_tokens} tokens, more than the model's {self.max_positions}")
        with self._lock:
            cache = new_cache(self.model) if self.calibrate else None
            weights = self._token_weights(prompt, 0, by_layer, cache)
            if self.calibrate:
                null = self.prompt(NULL_QUERY, texts, prefix)
                keep = _reusable_prefix(prompt, null, [span])
                _crop_cache(cache, keep)
                # Everything before the question is the same tokens in both prompts, so the candidates'
                # positions line up and the null question's weights subtract token by token.
                null_weights = self._token_weights(null, keep, by_layer, cache)
                end = prompt.candidates[-1][1]
                weights[:end] -= null_weights[:end]
        out = []
        for (a, b), (ca, cb), text in zip(prompt.candidates, prompt.candidate_chars, texts):
            per_char = np.zeros(len(text), dtype=np.float64)
            for t in range(a, b):
                s, e = (int(x) for x in prompt.offsets[t])
                s, e = max(s, ca) - ca, min(e, cb) - ca
                if e > s:
                    per_char[s:e] += weights[t] / (e - s)
            out.append(per_char)
        return out

    def _token_weights(self, prompt: BuiltPrompt, start: int, by_layer: dict[int, list[int]], cache) -> np.ndarray:
        """Each token's attention from the question rows, summed over the heads' layers and averaged over the
        heads (length ``prompt.n_tokens``)."""
        import torch

        rows = list(range(*prompt.spans[self.layout.question_span]))
        ids = torch.tensor([prompt.input_ids[start:]], dtype=torch.long)
        res = read_out(self.model, ids, by_layer, rows, cache=cache, keep_mean=True)
        total = sum(m.double().sum(dim=0) for m in res.mean.values()) / max(1, len(self.heads.heads))
        return total.cpu().numpy()

    def _run(self, prompt: BuiltPrompt, start: int, by_layer: dict[int, list[int]], heads: list[tuple[int, int]],
             span_names: list[str], n: int, cache):
        """Read out ``prompt.input_ids[start:]`` (after ``start`` cached tokens) and reduce it to
        (len(span_names), len(heads), n) scores."""
        import torch

        rows = sorted({t for s in span_names for t in range(*prompt.spans[s])})
        ids = torch.tensor([prompt.input_ids[start:]], dtype=torch.long)
        seg = torch.from_numpy(prompt.segment_map())
        res = read_out(self.model, ids, by_layer, rows, cache=cache, segments=seg, n_segments=n,
                       want_max=self.aggregate == "max", keep_mean=False)
        per_row = res.row_max if self.aggregate == "max" else res.row_sum
        return question_scores(per_row, by_layer, heads, rows, [prompt.spans[s] for s in span_names], n), res

    def rank(self, query: str, chunks: Sequence[Passage], prefix: Optional[str] = None,
             per_head: bool = False) -> RankedResults:
        texts, ids = rank_inputs(query, chunks)
        if not texts:
            return make_results(query, [], [], info={"reranker": self.name})

        def score(indices: Sequence[int], order: Sequence[int]) -> ScorePass:
            return score_pass(self, query, [texts[i] for i in indices], prefix, order, with_null=self.calibrate)

        t0 = time.perf_counter()
        prior = self.position_prior if self.debias == "position" else None
        ranked = rank_in_orders(score, len(texts), self.permutations, self.refine, self.calibrate, prior)
        passes = ranked.passes
        timings = pass_timings(passes, self.calibrate)
        timings["combine"] = ranked.combine_seconds
        if ranked.refined is not None:
            extra = ranked.refined
            timings["refine"] = extra.seconds(self.calibrate)
            for key in ("prompt", "forward", "calibrate"):
                if key in timings:
                    timings[key] += extra.timings.get(key, 0.0)
        timings["total"] = time.perf_counter() - t0
        per = None
        if per_head:
            # The input-order pass's per-head scores (with more passes the final score is normalised:
            # not their sum).
            first = passes[0]
            ph = first.per_head - first.null_per_head if self.calibrate else first.per_head
            names = [head_name(h) for h in self.heads.heads]
            per = [{names[k]: float(ph[k, i]) for k in range(len(names))} for i in range(len(texts))]
        info = {"prompt_tokens": passes[0].prompt_tokens, "question_tokens": passes[0].question_tokens,
                "layers_run": passes[0].layers_run, "passes": len(passes),
                "refined": len(ranked.shown) if ranked.refined is not None else None,
                "prior_mode": prior.mode if prior is not None else None, **self.describe()}
        return make_results(query, ranked.scores.tolist(), ids, per_head=per, timings=timings, info=info)

    def pass_tag(self) -> str:
        """A short key for what decides a pass's scores (model, adapter, heads, scoring, dtype): stored
        passes of another ranker are never reused. A ranker without an adapter keeps the key it had before
        adapters existed, so passes stored then are still found."""
        what = {"model": self.model_name, "heads": [list(h) for h in self.heads.heads],
                "aggregate": self.aggregate, "layout": self.layout.to_json(), "dtype": self.dtype}
        if self.adapter is not None:
            what["adapter"] = self.config.adapter
        return hashlib.sha1(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()[:10]

    def describe(self) -> dict[str, Any]:
        """What the results' ``info`` says about this ranker: its resolved configuration."""
        c = self.config
        return {"reranker": self.name, "model": c.model,
                "adapter": None if self.adapter is None else self.adapter.path.name,
                "heads": len(self.heads.heads), "heads_source": self.heads.source, "calibrate": c.calibrate,
                "aggregate": c.aggregate, "debias": c.debias, "permutations": c.permutations, "refine": c.refine,
                "question_span": self.layout.question_span, "device": c.device, "dtype": self.dtype}


def heads_by_layer(heads: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    return by_layer


def question_scores(per_row: dict, by_layer: dict[int, list[int]], heads: Sequence[tuple[int, int]],
                    rows: Sequence[int], spans: Sequence[tuple[int, int]], n: int) -> np.ndarray:
    """Per-head candidate scores from a read-out's per-row reductions (``row_sum`` or ``row_max``,
    layer → (heads, rows, n)): for each question span (a range of the positions in ``rows``), the mean over
    its rows; shape (len(spans), len(heads), n)."""
    import torch

    where = {}
    for layer, hs in by_layer.items():
        for k, h in enumerate(hs):
            where[(layer, h)] = (layer, k)
    row_index = {t: i for i, t in enumerate(rows)}
    out = np.zeros((len(spans), len(heads), n), dtype=np.float64)
    for si, (a, b) in enumerate(spans):
        idx = torch.tensor([row_index[t] for t in range(a, b)], dtype=torch.long)
        per_layer = {layer: m.index_select(1, idx.to(m.device)).double().mean(dim=1).cpu().numpy()
                     for layer, m in per_row.items()}
        for i, hd in enumerate(heads):
            layer, k = where[hd]
            out[si, i] = per_layer[layer][k]
    return out


def _crop_cache(cache, keep: int) -> None:
    extra = cache.get_seq_length() - keep
    if extra > 0:
        cache.crop(-extra)  # transformers 5: a negative count removes that many trailing tokens


def _reusable_prefix(prompt: BuiltPrompt, null: BuiltPrompt, span_names: Sequence[str]) -> int:
    """How many leading tokens the null question's prompt shares with ``prompt`` before either question span
    starts: their cached keys/values serve both read-outs."""
    return min([_common_prefix(prompt.input_ids, null.input_ids)]
               + [prompt.spans[s][0] for s in span_names] + [null.spans[s][0] for s in span_names])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
