"""Answers side by side: several generators, answer styles and rerankers' evidence over the same stored
questions, scored and compared question by question.

A development run (``bookqa eval ... --out DIR``) stores, per question, every configuration's ranking of
the same candidates. This bench reads those rows and, for each *variant* (a generator, an answer style,
the configuration whose top passages it reads, and how many), writes an answer with bookqa's own
answering path (``pipeline.answer_from``: the prompt, streaming, citation parsing and attribution that
``bookqa ask`` runs). Answers are appended to ``answers.jsonl`` as they finish, keyed by (question,
variant), so an interrupted run resumes where it stopped; the report is rewritten from that file.

Per variant the report gives answer F1 / EM / ROUGE-L with bootstrap intervals, LoCoMo's own F1 and its
categories, prompt and answer tokens, seconds to the first token (reading the prompt) and after it
(writing), the process's resident memory with that generator loaded, how often an answer carries a valid
citation and how often it says the passages do not hold the answer; where gold evidence is known,
citation precision (the cited chunk holds gold evidence) for the model's own and for attributed
citations; and paired differences against the first variant, or the one named as the baseline.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ...answer import ANSWER_STYLES, EVIDENCE_ORDERS, backed_by, is_refusal
from ...citecheck import CHECKERS
from ...errors import BookQAError, ConfigError
from ...fileio import write_json, write_text
from ...progress import Progress, no_progress
from ...settings import Settings
from .answers import score_answer
from .metrics import bootstrap_ci, percentiles
from .datasets.locomo import CATEGORY_NAMES

SEED = 0
ANSWERS = "answers.jsonl"
VARIANT_KEYS = ("generator", "model", "base_url", "style", "evidence", "top", "order", "check", "refusal", "keep")


@dataclass(frozen=True)
class Variant:
    """One way of answering: which generator writes, in which style, from whose top passages."""

    name: str
    generator: str = "local"  # local | remote
    model: str = "qwen2.5-coder-0.5b"
    base_url: str = ""  # remote only
    style: str = "short"
    evidence: str = "qr_trained_refine"  # the stored configuration whose ranking supplies the passages
    top: int = 3
    order: str = "document"  # the passages' order in the prompt: document | rank | auto (by the book's kind: answer.evidence_order_for)
    check: str = "off"  # citation check (citecheck.py): off | judge | embedder | both
    refusal: str = "off"  # off | example (the prompt also shows a worked "not in the passages" answer)
    keep: float = 1.0  # share of each passage the generator reads, by the QR heads' attention (focus.py)

    @classmethod
    def parse(cls, spec: str) -> "Variant":
        """``NAME=key:value,key:value`` (keys: generator, model, base_url, style, evidence, top, order, check, refusal,
        keep)."""
        name, _, rest = spec.partition("=")
        if not name.strip() or not rest:
            raise ConfigError(f"variant {spec!r} must look like NAME=key:value,... (keys: {', '.join(VARIANT_KEYS)})")
        values: dict[str, Any] = {}
        for part in rest.split(","):
            key, _, value = part.partition(":")
            key = key.strip()
            if key not in VARIANT_KEYS or not value:
                raise ConfigError(f"variant {name}: unknown or empty key {key!r} (keys: {', '.join(VARIANT_KEYS)})")
            try:
                values[key] = (int(value) if key == "top" else float(value) if key == "keep"
                               else value.strip() if key != "base_url" else value)
            except ValueError:
                raise ConfigError(f"variant {name}: {key} must be a number, got {value!r}") from None
        variant = cls(name=name.strip(), **values)
        if variant.style not in ANSWER_STYLES or variant.generator not in ("local", "remote") or variant.top < 1:
            raise ConfigError(f"variant {name}: style must be prose or short, generator local or remote, top >= 1")
        if variant.check not in CHECKERS:
            raise ConfigError(f"variant {name}: check must be one of {', '.join(CHECKERS)}")
        if variant.order not in EVIDENCE_ORDERS:
            raise ConfigError(f"variant {name}: order must be one of {', '.join(EVIDENCE_ORDERS)}")
        if variant.refusal not in ("off", "example"):
            raise ConfigError(f"variant {name}: refusal must be off or example")
        if not 0.0 < variant.keep <= 1.0:
            raise ConfigError(f"variant {name}: keep must be above 0 and at most 1")
        return variant

    def unchecked(self) -> tuple:
        """What makes the answer's text: a checked variant can reuse the text of an unchecked twin."""
        return (self.generator, self.model, self.base_url, self.style, self.evidence, self.top, self.order, self.refusal,
                self.keep)

    def settings(self, base: Settings) -> Settings:
        return base.replace(generator=self.generator, generator_model=self.model, answer_style=self.style,
                            base_url=self.base_url or None, top_n=self.top, evidence_order=self.order,
                            refusal_example=self.refusal == "example", evidence_keep=self.keep)


def read_answers(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Stored answers by (question id, variant); a torn last line (a killed run) is skipped."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[str(row["qid"]), row["variant"]] = row
    return out


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def answer_one(generator, row: dict[str, Any], book, variant: Variant, settings: Settings, checker=None,
               reuse: Optional[dict[str, Any]] = None, focus_ranker=None) -> dict[str, Any]:
    """One answer to one stored question, timed from the request to the first token and after it. With
    ``reuse`` (the stored answer of the unchecked twin variant: generation is greedy, so the text is the
    one this variant would write) only the citations are made again, and checked. A variant that keeps
    part of each passage trims them with ``focus_ranker``'s heads (focus.py)."""
    from ...answer import evidence_order_for
    from ...focus import attention_trimmer
    from ...pipeline import answer_from, choose_evidence, cite_answer

    ranked = row["configs"][variant.evidence]["chunk_ids"]
    order = evidence_order_for(variant.order, book.kind)
    trim = None  # a reused answer's text was written from its twin's trimmed passages already
    if reuse is None and variant.keep < 1.0:
        if focus_ranker is None:
            raise ConfigError(f"variant {variant.name} keeps part of each passage: it needs the QR ranker whose heads choose it")
        trim = attention_trimmer(focus_ranker, row["question"], variant.keep)
    if reuse is not None:
        evidence = choose_evidence(book.chunks, [(int(c), 0.0) for c in ranked], variant.top, order)
        text = reuse["text"]
        t0 = time.perf_counter()
        parsed = cite_answer(text, evidence, row["question"], style=variant.style, checker=checker)
        answer = {k: reuse[k] for k in ("seconds", "prompt_seconds", "write_seconds", "prompt_tokens", "answer_tokens",
                                        "generator", "rss_mb")}
        answer["reused_from"] = reuse["variant"]
        answer.update({k: reuse[k] for k in ("focus_seconds", "kept_share") if k in reuse})
    else:
        first: list[float] = []
        t0 = time.perf_counter()
        drafted = answer_from(generator, row["question"], book.chunks, [(int(c), 0.0) for c in ranked],
                              title=book.title, top_n=variant.top, max_tokens=settings.answer_max_tokens, stream=True,
                              on_token=lambda _p: first or first.append(time.perf_counter()), style=variant.style,
                              refusal_example=settings.refusal_example, checker=checker, order=order,
                              trim=trim)
        focus = drafted.focus_seconds or 0.0
        ttft = (first[0] - t0 - focus) if first else drafted.seconds
        text, parsed, evidence = drafted.text, drafted.parsed, drafted.evidence
        prompt_text = "\n".join(m["content"] for m in _messages(row["question"], evidence, book.title, variant.style,
                                                                 settings.refusal_example))
        answer = {"seconds": round(drafted.seconds, 4), "prompt_seconds": round(ttft, 4),
                  "write_seconds": round(max(0.0, drafted.seconds - ttft), 4),
                  "prompt_tokens": generator.count_tokens(prompt_text),
                  "answer_tokens": generator.count_tokens(text) if text else 0,
                  "generator": getattr(generator, "model_id", type(generator).__name__), "rss_mb": round(_rss_mb(), 1)}
        if trim is not None:
            answer["focus_seconds"] = round(focus, 4)
            answer["kept_share"] = round(sum(len(e.text) for e in evidence) / max(1, sum(len(e.chunk.text) for e in evidence)), 4)
        t0 = t0 + focus + drafted.seconds  # what follows the generation: parsing and checking
    answer.update({"qid": str(row["qid"]), "variant": variant.name, "text": text,
                   "evidence": [int(c) for c in ranked[:variant.top]],
                   "citations": [{k: v for k, v in asdict(c).items() if k != "quote"} for c in parsed.citations],
                   "invalid_citations": parsed.invalid_numbers, "refused": is_refusal(text)})
    if checker is not None:
        answer["check"] = variant.check
        answer["check_seconds"] = round(time.perf_counter() - t0, 4)
    answer["scores"] = score_answer(row["dataset"], row, {"text": text})
    return answer


def _messages(question, evidence, title, style, refusal_example):
    from ...answer import build_messages

    return build_messages(question, evidence, title=title, style=style, refusal_example=refusal_example)


class AnswerBench:
    """Answers for every (stored question, variant) pair, resumable, then the report."""

    def __init__(self, rows: Sequence[dict[str, Any]], variants: Sequence[Variant], library, out: Path,
                 settings: Settings, progress: Progress = no_progress):
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ConfigError("variant names must be unique")
        self.rows, self.variants, self.library, self.out = list(rows), list(variants), library, Path(out)
        self.settings, self.progress = settings, progress

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / ANSWERS
        done = read_answers(path)
        books: dict[str, Any] = {}
        for variant in self.variants:  # one generator loaded at a time: grouped by variant
            todo = [r for r in self.rows if (str(r["qid"]), variant.name) not in done
                    and variant.evidence in r.get("configs", {})]
            if not todo:
                continue
            from ...generate import get_generator
            from ...pipeline import citation_checker

            settings = variant.settings(self.settings)
            generator = get_generator(settings)
            checker = citation_checker(settings.replace(citation_check=variant.check), generator)
            focus_ranker = None
            if variant.keep < 1.0:
                from ...rerank.shared import get_reranker

                focus_ranker = get_reranker(settings)
            twins = [t.name for t in self.variants if t.check == "off" and t.unchecked() == variant.unchecked()
                     and variant.check != "off"]
            for i, row in enumerate(todo):
                self.progress(f"answers {variant.name}", i, len(todo))
                book_id = row["book"]["id"]
                if book_id not in books:
                    try:
                        books[book_id] = self.library.resolve(book_id)
                    except BookQAError as exc:  # one missing book leaves the others' answers to be made
                        books[book_id] = None
                        print(f"bookqa eval-answers: skipping the questions on {book_id}: {exc}", file=sys.stderr)
                if books[book_id] is None:
                    continue
                reuse = next((done[str(row["qid"]), t] for t in twins if (str(row["qid"]), t) in done), None)
                answer = answer_one(generator, row, books[book_id], variant, settings, checker=checker, reuse=reuse,
                                    focus_ranker=focus_ranker)
                with open(path, "a", encoding="utf-8") as fh:  # one line per answer: a kill loses one answer
                    fh.write(json.dumps(answer, ensure_ascii=False) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                done[answer["qid"], variant.name] = answer
            self.progress(f"answers {variant.name}", len(todo), len(todo))
            close = getattr(generator, "close", None)
            if close is not None:
                close()
            del generator
        return self.report(done)

    def report(self, done: Optional[dict] = None) -> dict[str, Any]:
        done = read_answers(self.out / ANSWERS) if done is None else done
        summary = summarize(self.rows, self.variants, done)
        write_json(self.out / "answers-report.json", summary)
        write_text(self.out / "answers-report.md", render(summary))
        return summary


# --- the report ---------------------------------------------------------------------------------------
def _shown(citations: Iterable[dict], inferred: Optional[bool] = None) -> list[dict]:
    """The citations a reader is shown as backing their sentence: not marked unsupported by a check."""
    return [c for c in citations if c.get("supported") is not False and (inferred is None or bool(c.get("inferred")) == inferred)]


def _gold(rows_by_qid: dict[str, dict], qid: str) -> set:
    return set((rows_by_qid[qid].get("gold") or {}).get("chunk_ids") or [])


def _question_precision(rows_by_qid: dict[str, dict], a: dict, inferred: Optional[bool] = None) -> Optional[float]:
    gold = _gold(rows_by_qid, a["qid"])
    cites = _shown(a.get("citations", []), inferred)
    return sum(c["chunk_id"] in gold for c in cites) / len(cites) if gold and cites else None


def _precision(rows_by_qid: dict[str, dict], answers: Iterable[dict], inferred: Optional[bool]) -> dict[str, Any]:
    """Share of shown citations whose chunk holds gold evidence, as a per-question mean (questions with
    gold evidence and at least one such citation), so a long answer's many citations do not outweigh
    others. A citation a check marked unsupported is not shown as backing its sentence, so it is left out."""
    per_q = [p for a in answers if (p := _question_precision(rows_by_qid, a, inferred)) is not None]
    return bootstrap_ci(per_q, seed=SEED)


def _recall(rows_by_qid: dict[str, dict], answers: Iterable[dict]) -> dict[str, Any]:
    """Of the gold chunks among the passages the generator read, the share a shown citation points at
    (per-question mean over questions whose passages hold gold evidence)."""
    per_q = []
    for a in answers:
        given = _gold(rows_by_qid, a["qid"]) & set(a.get("evidence", []))
        if given:
            per_q.append(len(given & {c["chunk_id"] for c in _shown(a.get("citations", []))}) / len(given))
    return bootstrap_ci(per_q, seed=SEED)


def summarize(rows: Sequence[dict[str, Any]], variants: Sequence[Variant],
              done: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    rows_by_qid = {str(r["qid"]): r for r in rows}
    dataset = rows[0]["dataset"] if rows else ""
    out: dict[str, Any] = {"dataset": dataset, "questions": len(rows), "variants": {}, "paired": {}}
    for v in variants:
        answers = [done[q, v.name] for q in rows_by_qid if (q, v.name) in done]
        entry: dict[str, Any] = {"variant": asdict(v), "n": len(answers)}
        if not answers:
            out["variants"][v.name] = entry
            continue
        keys = sorted({k for a in answers for k in a["scores"]})
        for key in keys:
            entry[key] = bootstrap_ci([a["scores"][key] for a in answers if key in a["scores"]], seed=SEED)
        if dataset == "locomo":
            cats = {}
            for cat, label in CATEGORY_NAMES.items():
                vals = [a["scores"]["locomo_f1"] for a in answers
                        if rows_by_qid[a["qid"]].get("category") == cat and "locomo_f1" in a["scores"]]
                if vals:
                    cats[label] = {"n": len(vals), "mean": sum(vals) / len(vals)}
            entry["locomo_by_category"] = cats
            adversarial = [a for a in answers if rows_by_qid[a["qid"]].get("category") == 5]
            if adversarial:
                entry["adversarial_refused"] = sum(a["refused"] for a in adversarial) / len(adversarial)
        entry["refused"] = sum(a["refused"] for a in answers) / len(answers)
        if any("check" in a for a in answers):
            entry["unbacked"] = sum(_backed(a) is False for a in answers) / len(answers)
            entry["flagged"] = sum(a["refused"] or _backed(a) is False for a in answers) / len(answers)
        entry["with_valid_citation"] = sum(bool(a["citations"]) for a in answers) / len(answers)
        entry["with_model_citation"] = sum(any(not c.get("inferred") for c in a["citations"]) for a in answers) / len(answers)
        for key in ("prompt_tokens", "answer_tokens", "seconds", "prompt_seconds", "write_seconds"):
            entry[key] = percentiles([float(a[key]) for a in answers])
        entry["rss_mb_max"] = max(a.get("rss_mb", 0.0) for a in answers)
        focused = [a for a in answers if "focus_seconds" in a]
        if focused:
            entry["focus_seconds"] = percentiles([float(a["focus_seconds"]) for a in focused])
            entry["kept_share"] = sum(float(a["kept_share"]) for a in focused) / len(focused)
        entry["generator"] = answers[0].get("generator")
        if any((r.get("gold") or {}).get("chunk_ids") for r in rows):
            entry["citation_precision"] = {"all": _precision(rows_by_qid, answers, None),
                                           "model": _precision(rows_by_qid, answers, False),
                                           "attributed": _precision(rows_by_qid, answers, True)}
            entry["citation_recall"] = _recall(rows_by_qid, answers)
        cites = [c for a in answers for c in a.get("citations", [])]
        if any("check" in a for a in answers):
            entry["unsupported_share"] = sum(c.get("supported") is False for c in cites) / len(cites) if cites else 0.0
            entry["check_seconds"] = percentiles([float(a.get("check_seconds", 0.0)) for a in answers])
        out["variants"][v.name] = entry
    if variants:
        base = variants[0].name
        out["baseline"] = base
        for v in variants[1:]:
            both = [q for q in rows_by_qid if (q, base) in done and (q, v.name) in done]
            if not both:
                continue
            pair: dict[str, Any] = {"n": len(both)}
            for key in ("f1", "locomo_f1", "rougeL", "em"):
                diffs = [done[q, v.name]["scores"].get(key) for q in both]
                refs = [done[q, base]["scores"].get(key) for q in both]
                if any(d is None for d in diffs + refs):
                    continue
                d = [a - b for a, b in zip(diffs, refs)]
                pair[key] = _paired(d)
            precision = [(_question_precision(rows_by_qid, done[q, v.name]), _question_precision(rows_by_qid, done[q, base]))
                         for q in both]
            precision = [a - b for a, b in precision if a is not None and b is not None]
            if precision:
                pair["citation_precision"] = _paired(precision)
            out["paired"][v.name] = pair
        out["rankers"] = _ranker_pairs(rows_by_qid, variants, done)
        out["evidence_changes"] = _evidence_pairs(rows_by_qid, variants, done)
    return out


def _backed(a: dict) -> Optional[bool]:
    """What ``ask`` reports as ``backed``, from a stored answer (``answer.backed_by``; the row's stored
    refusal verdict stands)."""
    if a["refused"]:
        return None
    return backed_by(a["text"], "check" in a, (c.get("supported") for c in a.get("citations", [])))


def _paired(diffs: Sequence[float]) -> dict[str, Any]:
    """Paired differences: their mean with its interval, and how many questions went each way."""
    return {**bootstrap_ci(diffs, seed=SEED), "won": sum(x > 0 for x in diffs), "lost": sum(x < 0 for x in diffs)}


def _f1_pair(done: dict, a: str, b: str, qids: Iterable[str]) -> Optional[dict[str, Any]]:
    both = [q for q in qids if (q, a) in done and (q, b) in done]
    return _paired([done[q, a]["scores"]["f1"] - done[q, b]["scores"]["f1"] for q in both]) if both else None


def _ranker_pairs(rows_by_qid: dict[str, dict], variants: Sequence[Variant], done: dict) -> list[dict[str, Any]]:
    """Rerankers judged downstream: each unchecked variant whose evidence is not the first variant's,
    paired with its twin (same generator, style and passages) that reads the first variant's evidence."""
    reference = variants[0].evidence
    out = []
    for w in variants:
        if w.check != "off" or w.evidence == reference:
            continue
        for v in variants:
            if v.check == "off" and v.evidence == reference and replace(v, evidence=w.evidence).unchecked() == w.unchecked():
                pair = _f1_pair(done, v.name, w.name, rows_by_qid)
                if pair:
                    out.append({"with": v.name, "against": w.name, "evidence": [reference, w.evidence], "f1": pair})
    return out


# How the passages are given, each against the plain form (the book's order, whole passages, three).
_PLAIN_EVIDENCE = {"order": "document", "keep": 1.0, "top": 3}


def _evidence_pairs(rows_by_qid: dict[str, dict], variants: Sequence[Variant], done: dict) -> list[dict[str, Any]]:
    """Evidence changes judged on the same answers' footing: each unchecked variant that gives the passages
    in another order, trimmed or in another number, paired with its twin that differs only in giving them
    plainly (the book's order, whole, three)."""
    out = []
    for w in variants:
        changed = {k: getattr(w, k) for k, plain in _PLAIN_EVIDENCE.items() if getattr(w, k) != plain}
        if w.check != "off" or not changed:
            continue
        plain = replace(w, **_PLAIN_EVIDENCE)
        for v in variants:
            if v.check == "off" and v.name != w.name and replace(v, name=plain.name) == plain:
                pair = _f1_pair(done, w.name, v.name, rows_by_qid)
                if pair:
                    out.append({"with": w.name, "against": v.name, "changed": changed, "f1": pair})
    return out


def _order_note(variant: dict) -> str:
    order = variant.get("order", "document")
    note = f", {order} order" if order != "document" else ""
    keep = variant.get("keep", 1.0)
    return note + (f", {keep:.0%} kept by QR attention" if keep < 1.0 else "")


def _ci(entry: Optional[dict], scale: float = 100.0) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    return f"{entry['mean'] * scale:.1f} [{entry['lo'] * scale:.1f}, {entry['hi'] * scale:.1f}]"


def render(summary: dict[str, Any]) -> str:
    lines = [f"# Answers side by side: {summary['dataset']}", "",
             f"{summary['questions']} stored questions; each variant reads the top passages of the stored "
             "ranking it names (the same candidates for all). Intervals: 95% bootstrap over questions.", ""]
    variants = summary["variants"]
    lines += ["| variant | generator | style | evidence | n | F1 | EM | ROUGE-L | LoCoMo F1 | refused | valid cite | "
              "prompt tok p50 | read s p50 | write s p50 | total s p50 | RSS MB |",
              "|" + "---|" * 16]
    for name, e in variants.items():
        v = e["variant"]
        if not e["n"]:
            lines.append(f"| {name} | {v['model']} | {v['style']} | {v['evidence']} top {v['top']}{_order_note(v)} | 0 |" + " – |" * 11)
            continue
        lines.append(
            f"| {name} | {v['generator']}:{v['model']} | {v['style']} | {v['evidence']} top {v['top']}{_order_note(v)} | {e['n']} | "
            f"{_ci(e.get('f1'))} | {_ci(e.get('em'))} | {_ci(e.get('rougeL'))} | {_ci(e.get('locomo_f1'))} | "
            f"{e['refused'] * 100:.0f}% | {e['with_valid_citation'] * 100:.0f}% | {e['prompt_tokens']['p50']:.0f} | "
            f"{e['prompt_seconds']['p50']:.2f} | {e['write_seconds']['p50']:.2f} | {e['seconds']['p50']:.2f} | "
            f"{e['rss_mb_max']:.0f} |")
    trimmed = [(n, e) for n, e in variants.items() if e.get("focus_seconds")]
    if trimmed:
        lines += ["", "Trimmed passages (the sentences the QR heads attend to most, focus.py): "
                  + "; ".join(f"{n} kept {e['kept_share'] * 100:.0f}% of the passages' characters, focus read-out "
                              f"{e['focus_seconds']['p50']:.2f} s p50 (before the generator's read s)" for n, e in trimmed)
                  + "."]
    if summary.get("paired"):
        lines += ["", f"## Paired against `{summary['baseline']}` (same questions; mean difference in points)", "",
                  "| variant | n | ΔF1 | won / lost | ΔLoCoMo F1 | ΔROUGE-L | Δcitation precision (n) |",
                  "|---|---|---|---|---|---|---|"]
        for name, p in summary["paired"].items():
            f1 = p.get("f1") or {}
            cp = p.get("citation_precision")
            lines.append(f"| {name} | {p['n']} | {_ci(f1)} | {f1.get('won', 0)} / {f1.get('lost', 0)} | "
                         f"{_ci(p.get('locomo_f1'))} | {_ci(p.get('rougeL'))} | "
                         f"{_ci(cp) + ' (' + str(cp['n']) + ')' if cp else '–'} |")
    if summary.get("rankers"):
        lines += ["", "## Rerankers judged downstream (same generator and style; paired ΔF1 in points)", "",
                  "| variant | against | evidence | n | ΔF1 | won / lost |", "|---|---|---|---|---|---|"]
        for r in summary["rankers"]:
            f1 = r["f1"]
            lines.append(f"| {r['with']} | {r['against']} | {r['evidence'][0]} − {r['evidence'][1]} | {f1['n']} | "
                         f"{_ci(f1)} | {f1['won']} / {f1['lost']} |")
    if summary.get("evidence_changes"):
        lines += ["", "## Evidence given another way (against the same variant with three whole passages in the "
                  "book's order; paired ΔF1 in points)", "",
                  "| variant | against | changed | n | ΔF1 | won / lost |", "|---|---|---|---|---|---|"]
        for r in summary["evidence_changes"]:
            f1 = r["f1"]
            changed = ", ".join(f"{k} {v}" for k, v in r["changed"].items())
            lines.append(f"| {r['with']} | {r['against']} | {changed} | {f1['n']} | {_ci(f1)} | "
                         f"{f1['won']} / {f1['lost']} |")
    cats = [(n, e) for n, e in variants.items() if e.get("locomo_by_category")]
    if cats:
        labels = sorted({label for _, e in cats for label in e["locomo_by_category"]})
        lines += ["", "## LoCoMo F1 by category", "", "| variant | " + " | ".join(labels) + " |",
                  "|---|" + "---|" * len(labels)]
        for name, e in cats:
            c = e["locomo_by_category"]
            lines.append(f"| {name} | " + " | ".join(f"{c[l]['mean'] * 100:.1f} (n={c[l]['n']})" if l in c else "–"
                                                     for l in labels) + " |")
    flagged = [(n, e) for n, e in variants.items() if e["n"]]
    if any("flagged" in e for _, e in flagged):
        lines += ["", "## Answers shown as not held by the passages", "",
                  "Refused: the generator says the passages do not hold the answer. Unbacked: a checked answer "
                  "that no passage passed the check for, which `bookqa ask` shows with a warning that the "
                  "passages may not hold it. On questions whose answer is in the book, both are misses; on "
                  "questions it does not answer (LoCoMo's adversarial category), both are right.", "",
                  "| variant | check | refused | unbacked | either |", "|---|---|---|---|---|"]
        for name, e in flagged:
            checked = "flagged" in e
            lines.append(f"| {name} | {e['variant'].get('check', 'off')} | {e['refused'] * 100:.0f}% | "
                         + (f"{e['unbacked'] * 100:.0f}% | {e['flagged'] * 100:.0f}% |" if checked else "– | – |"))
    precise = [(n, e) for n, e in variants.items() if e.get("citation_precision")]
    if precise:
        lines += ["", "## Citations against gold evidence", "",
                  "Precision: the share of the citations shown as backing their sentence whose chunk holds gold "
                  "evidence (per-question mean; a citation a check marks unsupported is not counted as shown). "
                  "Recall: of the gold chunks among the passages read, the share a shown citation points at.", "",
                  "| variant | check | precision, all | the model's own | attributed by bookqa | recall | marked unsupported | "
                  "check s p50 |", "|---|---|---|---|---|---|---|---|"]
        for name, e in precise:
            cp = e["citation_precision"]
            checked = "check_seconds" in e
            unsupported = f"{e['unsupported_share'] * 100:.0f}%" if checked else "–"
            check_s = f"{e['check_seconds']['p50']:.2f}" if checked else "–"
            lines.append(f"| {name} | {e['variant'].get('check', 'off') if checked else 'off'} | "
                         f"{_ci(cp['all'])} (n={cp['all']['n']}) | {_ci(cp['model'])} (n={cp['model']['n']}) | "
                         f"{_ci(cp['attributed'])} (n={cp['attributed']['n']}) | {_ci(e.get('citation_recall'))} | "
                         f"{unsupported} | {check_s} |")
    return "\n".join(lines) + "\n"
