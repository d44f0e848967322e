"""The synthetic name-anchored check of the real-model test, for every order-robust option of QRRanker.

    python benchmarks/qr_options_synthetic.py [--items 40] [--options plain,cal,pos,cal_pos,perm,pos_perm,cal_pos_perm,refine,perm_refine]

~20 passages about made-up people per item, the question names one of them (bookqa/lab/detection/synthetic.py);
the named passage is rarely first in the prompt, so a ranker that leans on position misses it. One model is
loaded and shared by every option; prints, per option, how often the named passage came first, how often
the top-1 was the prompt's first passage, and the seconds. The real-model test asks >= 95% for the default.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

OPTIONS = {  # name -> (calibrate, debias, permutations, refine)
    "plain": (False, "none", 1, 0), "cal": (True, "none", 1, 0), "pos": (False, "position", 1, 0),
    "cal_pos": (True, "position", 1, 0), "perm": (False, "none", 2, 0), "cal_perm": (True, "none", 2, 0),
    "pos_perm": (False, "position", 2, 0), "cal_pos_perm": (True, "position", 2, 0), "refine": (False, "none", 1, 5),
    "perm_refine": (False, "none", 2, 5),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--options", default="plain,cal,pos,cal_pos,perm,pos_perm,cal_pos_perm",
                    help=f"comma-separated, of: {', '.join(OPTIONS)}")
    args = ap.parse_args()
    import torch

    from bookqa.rerank import QRRanker
    from bookqa.lab.detection.synthetic import name_anchored_items
    from bookqa.settings import Settings

    settings = Settings.from_env()
    base = QRRanker(settings.reranker_model, settings=settings)
    items = name_anchored_items(args.items)
    print(f"{settings.reranker_model}, adapter {base.describe()['adapter'] or 'none'} (reranker_adapter), "
          f"{len(base.heads.heads)} heads, {base.device}, {torch.get_num_threads()} "
          f"torch threads; named passage first in the prompt in {sum(it.answer == 0 for it in items)} of {len(items)}")
    print("| option | named passage first | top-1 at prompt position 1 | seconds |\n|---|---|---|---|")
    for name in args.options.split(","):
        calibrate, debias, permutations, refine = OPTIONS[name]
        ranker = QRRanker((base.model, base.tokenizer), heads=base.heads, settings=settings, calibrate=calibrate,
                          debias=debias, permutations=permutations, refine=refine)
        start, hits, first = time.perf_counter(), 0, 0
        for item in items:
            top = ranker.rank(item.question, item.passages).results[0].index
            hits += top == item.answer
            first += top == 0
        print(f"| {name} | {hits}/{len(items)} | {first}/{len(items)} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
