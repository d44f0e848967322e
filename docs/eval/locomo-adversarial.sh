#!/usr/bin/env bash
# LoCoMo conv-26/30 with category 5 (adversarial: the question's answer is not in the conversation), first
# stage only (bm25, dense, hybrid; no reranker), every question ranked: the evidence that
# `DATASETS=locomo-adversarial docs/eval/answers/run.sh` answers from, to measure refusals.
set -euo pipefail

main() {
    . "$(dirname "$0")/data-dir.sh"
    D=$(data_dir "$0" "${1:-}" "locomo/") || exit 2
    cd "$(dirname "$0")/../.."
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    .venv/bin/python -m bookqa eval locomo --data $D/locomo/locomo10.json --books 2 --per-book 1000 --include-adversarial \
        --configs bm25,dense,hybrid --k 20 --exclude-ids docs/eval/qr-head-detection-ids.txt --rank-all \
        --out docs/eval/locomo-adversarial --resume --no-answers
}
main "$@"
