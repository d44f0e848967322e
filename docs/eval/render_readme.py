"""Rewrite the results section of docs/eval/README.md from the report JSONs:
    python docs/eval/render_readme.py "2026-11-28, after pass 2"
"""
import json, re, sys
from pathlib import Path
root = Path(__file__).resolve().parent
def pct(ci):
    if not ci or ci.get("mean") is None: return "–"
    return f"{100*ci['mean']:.1f} [{100*ci['lo']:.1f}, {100*ci['hi']:.1f}]"
def table(rep, keys=("R@1","R@3","R@5","R@10","R@50")):
    out = ["| config | n | " + " | ".join(keys) + " | s/query |", "|" + "---|" * (len(keys) + 3)]
    for name, e in rep["configs"].items():
        s = e["seconds"]["mean"]
        out.append(f"| {name} | {e['n']} | " + " | ".join(pct(e['recall'].get(k)) for k in keys) + f" | {s:.3f} |" if s is not None else "")
    return "\n".join(out)
parts = []
for ds, label in (("locomo", "LoCoMo"), ("musique", "MuSiQue"), ("narrativeqa", "NarrativeQA")):
    first = json.loads((root / ds / "firststage-all-report.json").read_text())
    cur = json.loads((root / ds / f"{ds}-report.json").read_text())
    c = first["counts"]
    parts.append(f"### {label}\n\nFirst stage, every selected question ({c['done']} questions, {c['with_gold']} with "
                 f"{first['gold_kind']} gold; recall in %, mean [95% CI]):\n\n" + table(first))
    cc = cur["counts"]
    behind = cur.get("configs_behind") or {}
    status = "partial: " + ", ".join(f"{k} {v}" for k, v in behind.items()) if behind else ("partial" if cur.get("partial") else "complete")
    sel = cur["run"].get("selection", {})
    parts.append(f"Reranking sample ({cc['done']} questions selected by `{json.dumps(sel)}`, "
                 f"{cc['with_gold']} with gold; excluded: {cc.get('excluded')}; {status}):\n\n" + table(cur))
    ans = cur.get("answers")
    if ans:
        for cfg, e in ans.items():
            bits = [f"n = {e['n']}"]
            for k, lab in (("f1","F1"),("em","EM"),("rougeL","ROUGE-L"),("locomo_f1","LoCoMo F1"),("accuracy","accuracy")):
                if k in e: bits.append(f"{lab} {pct(e[k])}")
            cats = e.get("locomo_by_category") or {}
            if cats:
                bits.append("by category: " + ", ".join(f"{k} {100*v['mean']:.1f} (n={v['n']})" for k, v in cats.items()))
            parts.append(f"Answers from the top-3 of `{cfg}` ({e.get('generator')}): " + "; ".join(bits))
    lat = cur.get("latency") or {}
    keep = [k for k in lat if k.endswith(": rerank") or k.startswith("generate") or k.startswith("candidates") or k.endswith("prefix")]
    if keep:
        parts.append("Latency (s, mean / p50 / p95): " + "; ".join(f"{k} {lat[k]['mean']:.1f} / {lat[k]['p50']:.1f} / {lat[k]['p95']:.1f} (n={lat[k]['n']})" for k in keep))
text = "## Results (measured " + sys.argv[1] + ")\n\n" + "\n\n".join(parts) + "\n"
readme = (root / "README.md").read_text()
readme = re.sub(r"(RESULTS_PLACEHOLDER\n?|## Results \(measured.*)\Z", lambda m: text, readme, flags=re.S)
(root / "README.md").write_text(readme)
print(text)
