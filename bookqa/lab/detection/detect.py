"""QR head detection: rank every head of the scanned layers by its QR score on a seed set.

For each seed item (question, candidates, gold ids) one capture read-out over *all* heads of the scanned
layers gives each head's candidate scores s_h(c) (mean over question tokens, sum over the candidate's
tokens; both question-span conventions from the same pass). The QR score of a head (QRHead's detection score) is

    QRScore_h = mean over items of Σ_{c ∈ gold} s_h(c)

and the top heads form the set. Per-item score matrices are cached as .npy files while the run goes, so
an interrupted detection resumes where it stopped. Held-out items (a separate seed file and/or a
fraction of the data) are scored the same way and used only to evaluate the chosen sets.

Selection methods:
- ``qr`` (the paper): the top-N heads by QR score.
- ``greedy``: forward selection on the selection items, each step adding the head that most improves
  the mean reciprocal rank of the summed score (the heads are still summed unweighted at inference).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ...errors import ConfigError, InputError
from ...fileio import fingerprint, read_npy, write_npy, write_text
from ...progress import Progress, no_progress
from ...rerank.heads import HeadSet, head_name, save_heads
from .seeds import SeedItem

SPANS = ("question", "query")
SELECT_METHODS = ("qr", "greedy")
SET_SIZES = (1, 4, 8, 16)
KS = (1, 3, 5)


def parse_layers(spec: Optional[str], n_layers: int) -> list[int]:
    if not spec:
        return list(range(n_layers))
    try:
        if "-" in spec:
            a, b = (int(x) for x in spec.split("-", 1))
            layers = list(range(a, b + 1))
        else:
            layers = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--layers must look like 8-16 or 3,5,7; got {spec!r}") from None
    if not layers or min(layers) < 0 or max(layers) >= n_layers:
        raise ConfigError(f"--layers {spec} is outside the model's 0-{n_layers - 1}")
    return layers


def heldout_split(items: Sequence[SeedItem], frac: float) -> tuple[list[SeedItem], list[SeedItem]]:
    """Deterministic split by a hash of the item id (independent of file order)."""
    if frac <= 0:
        return list(items), []
    select, held = [], []
    for it in items:
        h = int(hashlib.sha256(it.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < frac else select).append(it)
    return select, held


class ScoreCache:
    """One .npy per item: (spans, heads, candidates) float32, keyed by everything the scores depend on."""

    def __init__(self, directory: Path, context: dict[str, Any]):
        self.directory = Path(directory)
        self.context = fingerprint(context)

    def path(self, item: SeedItem) -> Path:
        key = fingerprint(self.context, item.id, item.question, item.candidates)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item.id)[:80]
        return self.directory / f"{safe}.{key}.npy"

    def get(self, item: SeedItem) -> Optional[np.ndarray]:
        p = self.path(item)
        if p.is_file():
            try:
                return read_npy(p)
            except (OSError, ValueError):
                return None
        return None

    def put(self, item: SeedItem, scores: np.ndarray) -> None:
        write_npy(self.path(item), scores.astype(np.float32))


def _round_robin(items: Sequence[SeedItem], heldout_ids: frozenset = frozenset()) -> list[SeedItem]:
    """Interleave (split, source) groups so an interrupted run has a balanced sample of everything."""
    groups: dict[tuple, list[SeedItem]] = {}
    for it in items:
        groups.setdefault((it.id in heldout_ids, it.source), []).append(it)
    out: list[SeedItem] = []
    queues = [list(g) for g in groups.values()]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def score_items(get_ranker, items: Sequence[SeedItem], heads: list[tuple[int, int]], cache: ScoreCache,
                progress: Progress = no_progress, stage: str = "scoring seed items",
                cached_only: bool = False, heldout_ids: frozenset = frozenset()) -> dict[str, np.ndarray]:
    """(spans, heads, candidates) scores per item id, computing only what the cache lacks (in
    round-robin source order) with the ranker ``get_ranker()`` returns (built on first need).
    ``cached_only``: return what the cache holds and compute nothing."""
    out: dict[str, np.ndarray] = {}
    todo = []
    for it in items:
        got = cache.get(it)
        if got is not None and got.shape == (len(SPANS), len(heads), len(it.candidates)):
            out[it.id] = got
        else:
            todo.append(it)
    if cached_only:
        return out
    progress(stage, len(out), len(items))
    for it in _round_robin(todo, heldout_ids):
        scores, _ = get_ranker().head_scores(it.question, it.candidates, heads=heads, spans=SPANS)
        cache.put(it, scores)
        out[it.id] = scores.astype(np.float32)
        progress(stage, len(out), len(items))
    return out


# ---------------------------------------------------------------------------------------------
# Head ranking and evaluation (pure numpy over the cached matrices)
# ---------------------------------------------------------------------------------------------

def qr_scores(mats: Sequence[np.ndarray], golds: Sequence[Sequence[int]]) -> np.ndarray:
    """Mean over items of each head's summed gold-candidate score: (heads,)."""
    total = np.zeros(mats[0].shape[0], dtype=np.float64)
    for m, g in zip(mats, golds):
        total += m[:, list(g)].sum(axis=1)
    return total / max(1, len(mats))


def _ranks_of_gold(summed: np.ndarray, gold: Sequence[int]) -> np.ndarray:
    order = np.argsort(-summed, kind="stable")
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    return pos[list(gold)]  # 0-based rank of each gold candidate


def evaluate(mats: Sequence[np.ndarray], golds: Sequence[Sequence[int]], head_idx: Optional[Sequence[int]],
             ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@k (share of gold in the top k, averaged), Hit@k (any gold in the top k) and MRR of the
    summed scores of ``head_idx`` (None = keep the input order, i.e. the retriever's ranking)."""
    rec = {k: 0.0 for k in ks}
    hit = {k: 0.0 for k in ks}
    mrr = 0.0
    for m, g in zip(mats, golds):
        if head_idx is None:
            summed = -np.arange(m.shape[1], dtype=np.float64)
        else:
            summed = m[list(head_idx)].sum(axis=0)
        r = _ranks_of_gold(summed, g)
        for k in ks:
            rec[k] += float((r < k).mean())
            hit[k] += float((r < k).any())
        mrr += 1.0 / (1 + r.min())
    n = max(1, len(mats))
    out = {f"R@{k}": rec[k] / n for k in ks}
    out.update({f"Hit@{k}": hit[k] / n for k in ks})
    out["MRR"] = mrr / n
    out["n"] = len(mats)
    return out


def greedy_select(mats: Sequence[np.ndarray], golds: Sequence[Sequence[int]], top: int,
                  pool: Optional[Sequence[int]] = None) -> list[int]:
    """Forward selection maximising MRR of the unweighted sum (ties: the higher QR-score head first)."""
    n_heads = mats[0].shape[0]
    pool = list(pool) if pool is not None else list(range(n_heads))
    chosen: list[int] = []
    sums = [np.zeros(m.shape[1]) for m in mats]
    for _ in range(min(top, len(pool))):
        best, best_val = None, -1.0
        for h in pool:
            if h in chosen:
                continue
            val = 0.0
            for s, m, g in zip(sums, mats, golds):
                val += 1.0 / (1 + _ranks_of_gold(s + m[h], g).min())
            if val > best_val + 1e-12:
                best, best_val = h, val
        chosen.append(best)
        for i, m in enumerate(mats):
            sums[i] = sums[i] + m[best]
    return chosen


# ---------------------------------------------------------------------------------------------
# The whole detection
# ---------------------------------------------------------------------------------------------

@dataclass
class DetectionOutcome:
    heads: HeadSet
    report: str
    evaluations: dict[str, Any] = field(default_factory=dict)


def _by_source(items: Sequence[SeedItem]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        out.setdefault(it.source or "?", []).append(i)
    return out


def detect(model: str, data: Sequence[str], *, settings, heldout: Sequence[str] = (), layers: Optional[str] = None,
           top: int = 16, heldout_frac: float = 0.0, limit: Optional[int] = None, span: Optional[str] = None,
           select: str = "qr", compare_all: bool = True, cache_dir: Optional[Path] = None,
           out: Optional[Path] = None, report_path: Optional[Path] = None, command: str = "",
           dtype: str = "auto", cached_only: bool = False, progress: Progress = no_progress) -> DetectionOutcome:
    from ...weights import causal_lm_source
    from ...rerank.prompt import PromptLayout
    from ...rerank.qr import QRRanker, load_model, load_tokenizer, resolve_dtype
    from .seeds import read_seeds

    if select not in SELECT_METHODS:
        raise ConfigError(f"--select must be one of {', '.join(SELECT_METHODS)}")
    span = span or (settings.rerank_question_span if settings.rerank_question_span != "auto" else "question")
    if span not in SPANS:
        raise ConfigError(f"question span must be one of {', '.join(SPANS)}")
    items: list[SeedItem] = [it for path in data for it in read_seeds(path)]
    if limit is not None:
        items = items[:limit]
    select_items, held_items = heldout_split(items, heldout_frac)
    held_items += [it for path in heldout for it in read_seeds(path)]
    if not select_items:
        raise InputError("no seed items left for selection")

    source = causal_lm_source(model, settings, progress)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(source)
    n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
    range_layers = parse_layers(layers, n_layers)
    scan_layers = list(range(n_layers)) if (layers and compare_all) else range_layers
    all_heads = [(l, h) for l in scan_layers for h in range(n_heads)]
    device = settings.device if settings.device != "auto" else "cpu"
    dtype_name = str(resolve_dtype(dtype if dtype != "auto" else settings.dtype, device)).removeprefix("torch.")
    layout = PromptLayout(question_span=span)
    loaded_ranker: list = []

    def get_ranker():
        """The model is loaded only when something has to be computed (not for a cached-only look)."""
        if not loaded_ranker:
            progress("loading model", 0, 1)
            loaded = load_model(source, device=device, dtype=dtype_name, keep_layers=max(scan_layers) + 1)
            ranker = QRRanker(model=(loaded, load_tokenizer(source)), heads=all_heads, settings=settings,
                              layout=layout, calibrate=False, aggregate="sum")  # the QR score proper
            ranker.model_name = model
            progress("loading model", 1, 1)
            loaded_ranker.append(ranker)
        return loaded_ranker[0]

    # Everything the cached scores depend on (a change here invalidates the cache). The cached scores
    # hold both question-span conventions, so the span choice is not part of the key.
    context = {"model": model, "source": source, "dtype": dtype_name,
               "layout": {**layout.to_json(), "question_span": "question"}, "heads": all_heads, "spans": SPANS}
    cache = ScoreCache(cache_dir or Path(str(out or "heads.json") + ".cache"), context)

    started = time.perf_counter()
    everything = score_items(get_ranker, select_items + held_items, all_heads, cache, progress,
                             "scoring seed items", cached_only=cached_only,
                             heldout_ids=frozenset(it.id for it in held_items))
    elapsed = time.perf_counter() - started
    if cached_only:  # a look at a run in progress: only the items scored so far
        select_items = [it for it in select_items if it.id in everything]
        held_items = [it for it in held_items if it.id in everything]
        if not select_items:
            raise InputError("no cached selection items yet")
    sel_scores = held_scores = everything

    si = SPANS.index(span)
    sel_m = [sel_scores[it.id][si] for it in select_items]
    sel_g = [it.gold for it in select_items]
    held_m = [held_scores[it.id][si] for it in held_items]
    held_g = [it.gold for it in held_items]

    in_range = [i for i, (l, _) in enumerate(all_heads) if l in set(range_layers)]
    qr = qr_scores(sel_m, sel_g)
    qr_order = sorted(in_range, key=lambda i: -qr[i])
    chosen = qr_order[:top] if select == "qr" else greedy_select(sel_m, sel_g, top, pool=in_range)

    heads = HeadSet(
        heads=[all_heads[i] for i in chosen], model=model,
        revision=_revision(source),
        detection={"method": f"{select} (QR score = mean over items of the gold candidates' attention mass)",
                   "question_span": span, "data": [str(p) for p in data], "heldout": [str(p) for p in heldout],
                   "heldout_frac": heldout_frac, "n_items": len(select_items), "n_heldout": len(held_items),
                   "layers": [min(range_layers), max(range_layers)], "dtype": dtype_name,
                   "prompt_layout": layout.to_json(), "command": command},
        date=_dt.date.today().isoformat(), scores=[float(qr[i]) for i in chosen], source=str(out or ""))

    evaluations: dict[str, Any] = {}
    lines = [f"# QR heads for {model}", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [f"- Date: {heads.date}; model source `{source}`; dtype {dtype_name}; question span `{span}`",
              f"- Selection items: {len(select_items)} ({_counts(select_items)}); held-out: {len(held_items)} "
              f"({_counts(held_items)})",
              f"- Scanned layers {min(scan_layers)}-{max(scan_layers)} ({len(all_heads)} heads); selection among "
              f"layers {min(range_layers)}-{max(range_layers)}; method `{select}`",
              f"- Scoring time (this run, cache misses only): {elapsed / 60:.1f} min", ""]
    lines += ["## Top heads by QR score (selection items)", "", "| rank | head | QR score | chosen |", "|---|---|---|---|"]
    for r, i in enumerate(qr_order[:max(top, 16)]):
        lines.append(f"| {r + 1} | {head_name(all_heads[i])} | {qr[i]:.4f} | {'yes' if i in chosen else ''} |")
    if select != "qr":
        lines += ["", f"Chosen by `{select}` (in order): " + ", ".join(head_name(all_heads[i]) for i in chosen)]

    def table(title: str, mats, golds, subsets: dict[str, list[int]]) -> None:
        if not mats:
            return
        lines.extend(["", f"## {title}", ""])
        sets: list[tuple[str, Optional[list[int]]]] = [("input order (retriever order, or shuffled)", None)]
        for n in SET_SIZES:
            if n <= len(chosen):
                sets.append((f"top-{n} ({select})", chosen[:n]))
        if select != "qr":
            sets.append((f"top-{top} by QR score", qr_order[:top]))
        sets.append(("all scanned-range heads summed", in_range))
        rng = np.random.default_rng(42)
        rand_runs = [list(rng.choice(in_range, size=min(top, len(in_range)), replace=False)) for _ in range(5)]
        for source_name, idx in [("all", list(range(len(mats))))] + sorted(subsets.items()):
            sub_m = [mats[i] for i in idx]
            sub_g = [golds[i] for i in idx]
            lines.append(f"**{source_name}** (n = {len(idx)})")
            lines.append("")
            lines.append("| head set | R@1 | R@3 | R@5 | Hit@1 | Hit@3 | MRR |")
            lines.append("|---|---|---|---|---|---|---|")
            rows = [(name, evaluate(sub_m, sub_g, hs)) for name, hs in sets]
            rand = [evaluate(sub_m, sub_g, hs) for hs in rand_runs]
            rows.append((f"{min(top, len(in_range))} random heads of the range (mean of 5)",
                         {k: float(np.mean([r[k] for r in rand])) for k in rand[0]}))
            for name, ev in rows:
                lines.append(f"| {name} | {ev['R@1']:.3f} | {ev['R@3']:.3f} | {ev['R@5']:.3f} | {ev['Hit@1']:.3f} "
                             f"| {ev['Hit@3']:.3f} | {ev['MRR']:.3f} |")
                evaluations.setdefault(title, {}).setdefault(source_name, {})[name] = ev
            lines.append("")

    table("Held-out evaluation", held_m, held_g, _by_source(held_items))
    table("Selection items (in-sample, for reference)", sel_m, sel_g, {})

    # The other question-span convention, chosen and evaluated the same way, from the same passes.
    other = SPANS[1 - si]
    o_sel = [sel_scores[it.id][1 - si] for it in select_items]
    o_held = [held_scores[it.id][1 - si] for it in held_items]
    o_qr = qr_scores(o_sel, sel_g)
    o_chosen = (sorted(in_range, key=lambda i: -o_qr[i])[:top] if select == "qr"
                else greedy_select(o_sel, sel_g, top, pool=in_range))
    if held_items:
        ev_this = evaluate(held_m, held_g, chosen)
        ev_other = evaluate(o_held, held_g, o_chosen)
        lines += ["## Question span", "",
                  f"Held-out, top-{top} heads chosen the same way under each convention:", "",
                  "| span | R@1 | R@3 | R@5 | MRR | heads |", "|---|---|---|---|---|---|",
                  f"| {span} (used) | {ev_this['R@1']:.3f} | {ev_this['R@3']:.3f} | {ev_this['R@5']:.3f} | "
                  f"{ev_this['MRR']:.3f} | {', '.join(head_name(all_heads[i]) for i in chosen)} |",
                  f"| {other} | {ev_other['R@1']:.3f} | {ev_other['R@3']:.3f} | {ev_other['R@5']:.3f} | "
                  f"{ev_other['MRR']:.3f} | {', '.join(head_name(all_heads[i]) for i in o_chosen)} |", ""]
        evaluations["span"] = {span: ev_this, other: ev_other,
                               f"{other}_heads": [list(all_heads[i]) for i in o_chosen]}

    if layers and compare_all and held_items:
        all_idx = list(range(len(all_heads)))
        a_chosen = (sorted(all_idx, key=lambda i: -qr[i])[:top] if select == "qr"
                    else greedy_select(sel_m, sel_g, top, pool=all_idx))
        ev_all = evaluate(held_m, held_g, a_chosen)
        ev_rng = evaluate(held_m, held_g, chosen)
        timed = [] if cached_only else held_items[:3]
        t_all = _prefill_time(get_ranker, timed, [all_heads[i] for i in a_chosen])
        t_rng = _prefill_time(get_ranker, timed, [all_heads[i] for i in chosen])
        deep_all = max(all_heads[i][0] for i in a_chosen)
        deep_rng = max(all_heads[i][0] for i in chosen)
        lines += ["## All layers vs the layer range", "",
                  "| heads from | deepest layer | R@1 | R@3 | R@5 | MRR | prefill s (mean of 3 held-out items) |",
                  "|---|---|---|---|---|---|---|",
                  f"| all layers 0-{n_layers - 1} | {deep_all} | {ev_all['R@1']:.3f} | {ev_all['R@3']:.3f} | "
                  f"{ev_all['R@5']:.3f} | {ev_all['MRR']:.3f} | {t_all:.2f} |",
                  f"| layers {min(range_layers)}-{max(range_layers)} | {deep_rng} | {ev_rng['R@1']:.3f} | "
                  f"{ev_rng['R@3']:.3f} | {ev_rng['R@5']:.3f} | {ev_rng['MRR']:.3f} | {t_rng:.2f} |", "",
                  "All-layers heads: " + ", ".join(head_name(all_heads[i]) for i in a_chosen), ""]
        evaluations["all_vs_range"] = {"all": {**ev_all, "deepest": deep_all, "prefill_s": t_all,
                                               "heads": [list(all_heads[i]) for i in a_chosen]},
                                       "range": {**ev_rng, "deepest": deep_rng, "prefill_s": t_rng}}
    if held_items:
        ev = evaluate(held_m, held_g, chosen)
        heads.detection["heldout_eval"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in ev.items()}
        if "span" in evaluations:
            heads.detection["other_span"] = {"span": other, "heads": evaluations["span"][f"{other}_heads"],
                                             "heldout_eval": {k: round(v, 4) if isinstance(v, float) else v
                                                              for k, v in evaluations["span"][other].items()}}
    if out:
        save_heads(out, heads)
    report = "\n".join(lines) + "\n"
    if report_path:
        write_text(report_path, report)
    return DetectionOutcome(heads=heads, report=report, evaluations=evaluations)


def evaluate_heads(ranker, items: Sequence[SeedItem], progress: Progress = no_progress) -> dict[str, Any]:
    """Recall of ``ranker`` (its heads, span, calibration, aggregation) on seed items, next to the
    items' input order (the retriever's ranking when the seed file kept it)."""
    mats, golds, seconds, tokens = [], [], [], []
    progress("evaluating heads", 0, len(items))
    for i, it in enumerate(items):
        res = ranker.rank(it.question, it.candidates)
        scores = np.zeros(len(it.candidates))
        for r in res:
            scores[r.index] = r.score
        mats.append(scores[None])
        golds.append(it.gold)
        seconds.append(res.timings["total"])
        tokens.append(res.info["prompt_tokens"])
        progress("evaluating heads", i + 1, len(items))
    out = {"heads": evaluate(mats, golds, [0]), "input_order": evaluate(mats, golds, None),
           "seconds_per_item": float(np.mean(seconds)) if seconds else float("nan"),
           "tokens_per_item": float(np.mean(tokens)) if tokens else float("nan")}
    out["by_source"] = {src: {"heads": evaluate([mats[i] for i in idx], [golds[i] for i in idx], [0]),
                              "input_order": evaluate([mats[i] for i in idx], [golds[i] for i in idx], None)}
                        for src, idx in _by_source(items).items()}
    return out


def _prefill_time(get_ranker, items: Sequence[SeedItem], heads: list[tuple[int, int]]) -> float:
    times = []
    for it in items:
        ranker = get_ranker()
        t = time.perf_counter()
        ranker.head_scores(it.question, it.candidates, heads=heads)
        times.append(time.perf_counter() - t)
    return float(np.mean(times)) if times else float("nan")


def _counts(items: Sequence[SeedItem]) -> str:
    c: dict[str, int] = {}
    for it in items:
        c[it.source] = c.get(it.source, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"


def _revision(source: str) -> str:
    """What identifies the weights: the GGUF a converted model came from, or the directory/hub id."""
    marker = Path(source) / "bookqa-source.json"
    if marker.is_file():
        try:
            return "converted from " + Path(json.loads(marker.read_text())["gguf"]).name
        except (OSError, ValueError, KeyError):
            pass
    return source
