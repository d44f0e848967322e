"""The report of a run: every configuration side by side, from the per-question results file.

JSON (``<dataset>-report.json``) holds everything; Markdown (``<dataset>-report.md``) shows one table
per dataset (R@1/3/5/10/50, recall-any, seconds per query; means with 95% bootstrap intervals), the
latency of each stage, the answer scores, paired differences against ``qr`` and the best first stage, and
the counts (questions, excluded for no gold, partial runs).
Both files are written atomically; recomputing a report from the results file changes nothing else.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ...fileio import read_json, write_json, write_text
from .answers import score_answer
from .bias import BINS, bias_summary, gold_at_first
from .configs import FIRST_STAGE
from .datasets.locomo import CATEGORY_NAMES
from .metrics import RECALL_KS, bootstrap_ci, percentiles, recalls

TABLE_KEYS = [f"R@{k}" for k in RECALL_KS] + ["any@3", "any@10"]
SEED = 0


def _config_order(rows: Iterable[dict[str, Any]], preferred: Sequence[str]) -> list[str]:
    seen = list(preferred)
    for r in rows:
        for name in r.get("configs", {}):
            if name not in seen:
                seen.append(name)
    return seen


def summarize(rows: Sequence[dict[str, Any]], meta: Optional[dict[str, Any]] = None, n_boot: int = 1000) -> dict[str, Any]:
    meta = dict(meta or {})
    dataset = meta.get("dataset") or (rows[0]["dataset"] if rows else "")
    names = _config_order(rows, meta.get("configs") or [])
    with_gold = [r for r in rows if r.get("gold", {}).get("chunk_ids")]
    gold_kinds = sorted({r.get("gold", {}).get("kind", "none") for r in rows})
    summary: dict[str, Any] = {
        "dataset": dataset, "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run": meta,
        "gold_kind": "silver" if gold_kinds == ["silver"] else ("/".join(gold_kinds) or "none"),
        "counts": {"selected": meta.get("selected_questions"), "done": len(rows), "with_gold": len(with_gold),
                   "excluded_no_gold": len(rows) - len(with_gold), "excluded": meta.get("excluded") or {},
                   "books": len({r.get("doc_id") for r in rows})},
        "configs": {}, "latency": {}, "by_subset": {}, "answers": None,
    }
    missing_rows = bool(meta.get("selected_questions")) and len(rows) < int(meta["selected_questions"])
    for name in names:
        scored = [r for r in with_gold if name in r.get("configs", {})]
        per_q = [recalls(r["configs"][name]["chunk_ids"], r["gold"]["chunk_ids"]) for r in scored]
        metrics = {key: bootstrap_ci([p[key] for p in per_q], n_boot=n_boot, seed=SEED) for key in (per_q[0] if per_q else {})}
        seconds = [float(r["configs"][name]["seconds"]) for r in rows if name in r.get("configs", {})]
        summary["configs"][name] = {"n": len(scored), "ran": len(seconds), "recall": metrics,
                                    "seconds": percentiles(seconds)}
    # A configuration of this run that has not scored every question with gold yet makes the run partial.
    behind = {n: f"{summary['configs'][n]['n']} of {len(with_gold)}" for n in (meta.get("configs") or [])
              if n in summary["configs"] and summary["configs"][n]["n"] < len(with_gold)}
    summary["partial"] = bool(missing_rows or behind)
    summary["configs_behind"] = behind
    summary["latency"] = _latency(rows, names)
    summary["by_subset"] = _by_subset(with_gold, names)
    summary["answers"] = _answers(dataset, rows, n_boot)
    summary["generation"] = _generation(rows, names)
    summary["paired"] = _paired(with_gold, names, summary["configs"], n_boot)
    summary["bias"] = bias_summary(rows, names, n_boot=n_boot, seed=SEED)
    summary["gold_at_first"] = gold_at_first(with_gold) if summary["bias"] else None
    return summary


PAIRED_KEYS = ("R@1", "R@3", "R@5")
PAIRED_REFERENCE = "qr"
# the CPU default's ranker (full prompt, shipped adapter, refine): what a new variant must hold up against
DEFAULT_REFERENCE = "qr_trained_refine"


def _paired(with_gold: Sequence[dict[str, Any]], names: Sequence[str], configs: dict[str, Any],
            n_boot: int) -> Optional[dict[str, Any]]:
    """Every configuration against ``qr``, the CPU default's ranker (when the run has it) and the best first
    stage (by mean R@1), on the questions
    both scored: mean per-question difference with a paired bootstrap interval and the questions won and
    lost. Pairing removes the spread between questions, which the intervals of the main table keep, so a
    difference that those intervals cannot show can still be told from zero here."""
    first = [n for n in names if n in FIRST_STAGE and configs.get(n, {}).get("n")]
    best = max(first, key=lambda n: configs[n]["recall"]["R@1"]["mean"]) if first else None
    references = [r for r in (PAIRED_REFERENCE, DEFAULT_REFERENCE, best) if r and configs.get(r, {}).get("n")]
    if not references or len(names) < 2:
        return None
    # one recall computation per (question, configuration), shared by both references
    per_row = [{name: recalls(res["chunk_ids"], r["gold"]["chunk_ids"]) for name, res in r.get("configs", {}).items()
                if name in names} for r in with_gold]
    out: dict[str, Any] = {"references": references, "configs": {}}
    for ref in references:
        table: dict[str, Any] = {}
        for name in names:
            both = [rec for rec in per_row if name != ref and name in rec and ref in rec]
            if not both:
                continue
            entry: dict[str, Any] = {"n": len(both)}
            for key in PAIRED_KEYS:
                diffs = [rec[name][key] - rec[ref][key] for rec in both]
                entry[key] = {**bootstrap_ci(diffs, n_boot=n_boot, seed=SEED),
                              "won": sum(d > 0 for d in diffs), "lost": sum(d < 0 for d in diffs)}
            table[name] = entry
        out["configs"][ref] = table
    return out


def _paired_section(paired: dict[str, Any]) -> list[str]:
    lines = ["", "## Paired differences", "",
             "Each configuration minus a reference on the questions both scored: mean difference in recall "
             "points [95% paired bootstrap interval] (questions won / lost). An interval that excludes 0 is a "
             "difference these questions can show."]
    for ref in paired["references"]:
        table = paired["configs"].get(ref) or {}
        if not table:
            continue
        lines += ["", f"Against `{ref}`:", "", "| config | n | " + " | ".join(f"Δ{k}" for k in PAIRED_KEYS) + " |",
                  "|" + "---|" * (2 + len(PAIRED_KEYS))]
        for name, entry in table.items():
            cells = [name, str(entry["n"])]
            for key in PAIRED_KEYS:
                d = entry[key]
                cells.append(f"{100 * d['mean']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] "
                             f"({d['won']}/{d['lost']})")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


GENERATION_KEYS = ("tokens_generated", "parse_failures", "generator_calls")


def _generation(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """For configurations that generate text to rank (their info has ``tokens_generated`` /
    ``parse_failures`` / ``generator_calls``): output tokens and calls per query, and how often an answer
    could not be read (parse failures), needed fixing (repairs) or ranked nothing (unchanged), per call."""
    out: dict[str, Any] = {}
    for name in names:
        infos = [r["configs"][name].get("info") or {} for r in rows if name in r.get("configs", {})]
        infos = [i for i in infos if any(k in i for k in GENERATION_KEYS)]
        if not infos:
            continue
        calls = sum(int(i.get("generator_calls", 0)) for i in infos)
        failures = sum(int(i.get("parse_failures", 0)) for i in infos)
        repairs = sum(int(i.get("repairs", 0)) for i in infos)
        unchanged = sum(int(i.get("calls_unchanged", 0)) for i in infos)
        out[name] = {"n": len(infos),
                     "tokens_generated": percentiles([float(i.get("tokens_generated", 0)) for i in infos]),
                     "generator_calls": percentiles([float(i.get("generator_calls", 0)) for i in infos]),
                     "calls": calls, "parse_failures": failures, "repairs": repairs, "calls_unchanged": unchanged,
                     "parse_failure_rate": failures / calls if calls else None,
                     "repair_rate": repairs / calls if calls else None,
                     "queries_with_failure": sum(int(i.get("parse_failures", 0)) > 0 for i in infos)}
    return out


def _latency(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    stages: dict[str, list[float]] = {"candidates (hybrid search)": [], "gold mapping": []}
    for r in rows:
        if "candidates" in r:
            stages["candidates (hybrid search)"].append(float(r["candidates"]["seconds"]))
        if "gold" in r.get("timings", {}):
            stages["gold mapping"].append(float(r["timings"]["gold"]))
        for name in names:
            res = r.get("configs", {}).get(name)
            if res is None:
                continue
            for key, value in res.get("timings", {}).items():
                if key in ("prefix", "rerank", "search", "fusion", "rerank.forward", "rerank.prompt", "rerank.calibrate",
                           "rerank.generate", "rerank.permutation"):
                    stages.setdefault(f"{name}: {key}", []).append(float(value))
        if "answer" in r:
            stages.setdefault(f"generate ({r['answer']['config']})", []).append(float(r["answer"]["seconds"]))
    return {k: percentiles(v) for k, v in stages.items() if v}


def _by_subset(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    subsets = sorted({str(r.get("subset")) for r in rows if r.get("subset") is not None})
    if len(subsets) < 2:
        return {}
    out: dict[str, Any] = {}
    for name in names:
        table: dict[str, Any] = {}
        for s in subsets:
            scored = [r for r in rows if str(r.get("subset")) == s and name in r.get("configs", {})]
            per_q = [recalls(r["configs"][name]["chunk_ids"], r["gold"]["chunk_ids"]) for r in scored]
            table[s] = {"n": len(per_q), **{key: (sum(p[key] for p in per_q) / len(per_q) if per_q else None)
                                           for key in ("R@3", "R@5", "R@10")}}
        means = [t for t in table.values() if t["n"]]
        table["macro mean"] = {"n": sum(t["n"] for t in means),
                               **{key: (sum(t[key] for t in means) / len(means) if means else None)
                                  for key in ("R@3", "R@5", "R@10")}}
        out[name] = table
    return out


def _answers(dataset: str, rows: Sequence[dict[str, Any]], n_boot: int) -> Optional[dict[str, Any]]:
    answered = [r for r in rows if "answer" in r]
    if not answered:
        return None
    by_config: dict[str, Any] = {}
    for config in sorted({r["answer"]["config"] for r in answered}):
        group = [r for r in answered if r["answer"]["config"] == config]
        scores = [score_answer(dataset, r, r["answer"]) for r in group]
        keys = sorted({k for s in scores for k in s})
        entry: dict[str, Any] = {"n": len(group),
                                 **{k: bootstrap_ci([s[k] for s in scores if k in s], n_boot=n_boot, seed=SEED)
                                    for k in keys}}
        if dataset == "locomo":
            cats: dict[str, Any] = {}
            for cat, label in CATEGORY_NAMES.items():
                vals = [s["locomo_f1"] for r, s in zip(group, scores) if r.get("category") == cat and "locomo_f1" in s]
                if vals:
                    cats[label] = {"n": len(vals), "mean": sum(vals) / len(vals)}
            entry["locomo_by_category"] = cats
        unparsed = [r for r in group if r.get("options") and r["answer"].get("letter") is None]
        if any(r.get("options") for r in group):
            entry["unparsed_letters"] = len(unparsed)
        entry["generator"] = group[0]["answer"].get("generator")
        entry["style"] = group[0]["answer"].get("style", "prose")  # answers from before styles were prose
        by_config[config] = entry
    return by_config


# --- rendering --------------------------------------------------------------------------------------

def _pct(ci: Optional[dict[str, Any]], interval: bool = True) -> str:
    if not ci or ci.get("mean") is None:
        return "–"
    if not interval or ci.get("lo") is None:
        return f"{100 * ci['mean']:.1f}"
    return f"{100 * ci['mean']:.1f} [{100 * ci['lo']:.1f}, {100 * ci['hi']:.1f}]"


def _secs(p: Optional[dict[str, Any]]) -> str:
    if not p or p.get("mean") is None:
        return "–"
    return f"{p['mean']:.3f}" if p["mean"] < 1 else f"{p['mean']:.2f}"


def _of(count: int, total: int) -> str:
    return f"{count} of {total} ({100 * count / total:.1f}%)" if total else "–"


def _rate(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _bias_cells(entry: Optional[dict[str, Any]]) -> list[str]:
    """Main-table cells: top-1 at prompt position 1 (%) in the original and in the shuffled order,
    shuffled-order R@3 (%)."""
    if not entry:
        return ["–", "–", "–"]
    shuffled = entry.get("shuffled")
    if not shuffled:
        return [_rate(entry["original"]["top1_at_1"]), "–", "–"]
    return [_rate(entry["original"]["top1_at_1"]), _rate(shuffled["top1_at_1"]),
            _pct(shuffled["recall"]["R@3"], interval=False)]


def _bias_section(bias: dict[str, Any], run: dict[str, Any], reference: Optional[dict[str, Any]] = None) -> list[str]:
    labels = [b[0] for b in BINS]
    lines = ["", "## Order bias", "",
             "Where each configuration's top-1 candidate sat in the prompt (1 = first), over the questions it "
             "ranked; `hybrid` is the input order itself. Shuffled: the same candidates in a seeded random order "
             "(`--shuffle-check`), recall in % next to the original order's on the same questions.", "",
             "| config | n | top-1 @1 % | mean pos | " + " | ".join(f"@{l}" for l in labels)
             + " | shuffled n | shuffled top-1 @1 % | R@1 orig → shuf | R@3 orig → shuf (Δ) | R@5 orig → shuf |",
             "|" + "---|" * (4 + len(labels) + 5)]
    for name, entry in bias.items():
        o = entry["original"]
        cells = [name, str(o["n"]), _rate(o["top1_at_1"]), f"{o['mean_position']:.2f}"]
        cells += [str(o["bins"].get(l, 0)) for l in labels]
        sh = entry.get("shuffled")
        if sh:
            r, ro, d = sh["recall"], sh["recall_original"], sh["delta"]
            cells += [str(r["R@3"]["n"]), _rate(sh["top1_at_1"]),
                      f"{100 * ro['R@1']:.1f} → {100 * r['R@1']['mean']:.1f}",
                      f"{100 * ro['R@3']:.1f} → {100 * r['R@3']['mean']:.1f} ({100 * d['R@3']:+.1f})",
                      f"{100 * ro['R@5']:.1f} → {100 * r['R@5']['mean']:.1f}"]
        else:
            cells += ["–"] * 5
        lines.append("| " + " | ".join(cells) + " |")
    if reference and reference.get("n"):
        where = f"{_rate(reference['original'])}% of the {reference['n']} questions with gold in the original order"
        if reference.get("shuffled_n"):
            where += f", {_rate(reference['shuffled'])}% of {reference['shuffled_n']} in the shuffled order"
        lines += ["", f"Yardstick: the prompt's first candidate is a gold chunk in {where}. A reranker whose top-1 "
                  "is always gold reaches up to that top-1 @1 rate with no position bias at all; in the shuffled "
                  "order, a rate well above it is bias."]
    if not run.get("shuffle_check") and not any("shuffled" in e for e in bias.values()):
        lines += ["", "No shuffled-order results: run with `--shuffle-check` to add them."]
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    run = summary.get("run") or {}
    c = summary["counts"]
    lines = [f"# bookqa eval: {summary['dataset']}", ""]
    if run.get("command"):
        lines += ["Command:", "", "```", run["command"], "```", ""]
    status = "**partial run**" if summary.get("partial") else "complete run"
    lines.append(f"- {status}: {c['done']} of {c['selected'] if c['selected'] is not None else '?'} selected "
                 f"questions on {c['books']} document(s); first-stage K = {run.get('k', '?')}")
    lines.append(f"- gold evidence: {summary['gold_kind']}; {c['with_gold']} questions with gold chunks, "
                 f"{c['excluded_no_gold']} excluded from recall (no gold chunk)")
    for name, done in (summary.get("configs_behind") or {}).items():
        lines.append(f"- **{name} has scored {done} questions so far** (the run is still going or was stopped)")
    for reason, n in (c.get("excluded") or {}).items():
        lines.append(f"- not selected: {n} questions, {reason}")
    for note in run.get("notes") or []:
        lines.append(f"- data note: {note}")
    if run.get("settings"):
        s = run["settings"]
        lines.append("- models: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    lines += ["", "Recall in % (mean [95% bootstrap interval]); `n` = questions with gold scored by that configuration; "
              "seconds = mean wall time per query of the configuration.", ""]
    bias = summary.get("bias") or {}
    header = ["config", "n"] + TABLE_KEYS + (["top-1 @pos 1", "shuffled: top-1 @pos 1", "shuffled R@3"]
                                             if bias else []) + ["s/query"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    requested = run.get("configs") or list(summary["configs"])
    earlier = False
    for name, entry in summary["configs"].items():
        label = name if name in requested else f"{name} \\*"
        earlier = earlier or name not in requested
        cells = [label, str(entry["n"])] + [_pct(entry["recall"].get(k)) for k in TABLE_KEYS]
        if bias:
            cells += _bias_cells(bias.get(name))
        cells.append(_secs(entry["seconds"]))
        lines.append("| " + " | ".join(cells) + " |")
    if earlier:
        lines += ["", "\\* not a configuration of this run: results an earlier run stored for some of these questions."]
    k = run.get("k")
    if k is not None and int(k) < 50:
        lines += ["", f"With K = {k} first-stage candidates, R@50 equals R@{k} (every list holds at most {k} chunks)."]
    if summary.get("by_subset"):
        lines += ["", "## By subset (mean recall in %)", ""]
        subsets = list(next(iter(summary["by_subset"].values())).keys())
        lines.append("| config | " + " | ".join(f"{s} R@3/5/10 (n)" for s in subsets) + " |")
        lines.append("|" + "---|" * (len(subsets) + 1))
        for name, table in summary["by_subset"].items():
            cells = []
            for s in subsets:
                t = table[s]
                cells.append("–" if not t["n"] else
                             f"{100 * t['R@3']:.1f} / {100 * t['R@5']:.1f} / {100 * t['R@10']:.1f} ({t['n']})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if summary.get("paired"):
        lines += _paired_section(summary["paired"])
    if bias:
        lines += _bias_section(bias, run, summary.get("gold_at_first"))
    if summary.get("answers"):
        lines += ["", "## Answers", ""]
        for config, entry in summary["answers"].items():
            parts = [f"evidence: top-{run.get('top_n', 3)} of `{config}`", f"n = {entry['n']}",
                     f"generator {entry.get('generator')}", f"answer style {entry.get('style', 'prose')}"]
            lines.append("- " + "; ".join(parts))
            for key, label in (("f1", "token F1"), ("em", "EM"), ("rougeL", "ROUGE-L"), ("accuracy", "accuracy"),
                               ("locomo_f1", "LoCoMo F1 (official rules)")):
                if key in entry:
                    lines.append(f"  - {label}: {_pct(entry[key])}")
            if "unparsed_letters" in entry:
                lines.append(f"  - replies with no parseable letter: {entry['unparsed_letters']}")
            for label, v in (entry.get("locomo_by_category") or {}).items():
                lines.append(f"  - LoCoMo F1, {label}: {100 * v['mean']:.1f} (n = {v['n']})")
    if summary.get("generation"):
        lines += ["", "## Generated output of the generative rerankers", "",
                  "Per query: output tokens the generator wrote (mean / p95) and generator calls (mean); per call: "
                  "answers nothing could be read from (parse failures: those candidates keep their order) and "
                  "answers used after fixing (repairs: ids or scores missing, repeated or out of range); readable "
                  "answers that rank nothing (unchanged: the order shown, or one score for the whole group).", "",
                  "| config | n | output tokens/query | p95 | calls/query | parse failures | repairs | unchanged "
                  "| s/query |", "|---|---|---|---|---|---|---|---|---|"]
        for name, g in summary["generation"].items():
            cells = [name, str(g["n"]), f"{g['tokens_generated']['mean']:.1f}", f"{g['tokens_generated']['p95']:.0f}",
                     f"{g['generator_calls']['mean']:.1f}", _of(g["parse_failures"], g["calls"]),
                     _of(g["repairs"], g["calls"]), _of(g.get("calls_unchanged", 0), g["calls"]),
                     _secs((summary["configs"].get(name) or {}).get("seconds"))]
            lines.append("| " + " | ".join(cells) + " |")
    if summary.get("latency"):
        lines += ["", "## Latency per stage (seconds)", "", "| stage | n | mean | p50 | p95 |", "|---|---|---|---|---|"]
        for stage, p in summary["latency"].items():
            lines.append(f"| {stage} | {p['n']} | {p['mean']:.3f} | {p['p50']:.3f} | {p['p95']:.3f} |")
    lines.append("")
    return "\n".join(lines)


def write_report(out_dir: Path | str, dataset: str, rows: Sequence[dict[str, Any]],
                 meta: Optional[dict[str, Any]] = None) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    if meta is None:
        run_file = out_dir / f"{dataset}-run.json"
        meta = read_json(run_file) if run_file.is_file() else {"dataset": dataset}
    summary = summarize(rows, meta)
    json_path, md_path = out_dir / f"{dataset}-report.json", out_dir / f"{dataset}-report.md"
    write_json(json_path, summary)
    write_text(md_path, render_markdown(summary))
    return md_path, json_path
