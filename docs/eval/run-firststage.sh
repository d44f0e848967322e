#!/usr/bin/env bash
# Phase 1 of the development run: first-stage configurations on every selected question (cheap), while
# the shipped QR heads file does not exist yet. Resumable: re-running skips finished questions.
set -euo pipefail
# The development data (locomo/, musique/, narrativeqa/): the first argument or $BOOKQA_DATA.
. "$(dirname "$0")/data-dir.sh"
D=$(data_dir "$0" "${1:-}" "locomo/, musique/, narrativeqa/") || exit 2
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export BOOKQA_RERANKER_ADAPTER=none  # the reranker these runs began with (no trained adapter merged into "qr")
export BOOKQA_DTYPE=float32  # as every stored row ("auto" is bfloat16 on CPUs with AVX512-BF16)
BQ=".venv/bin/python -m bookqa -q"
$BQ eval locomo --data $D/locomo/locomo10.json --books 2 --configs bm25,dense,hybrid --k 20 \
    --out docs/eval/locomo --resume
$BQ eval musique --data $D/musique/musique_ans_v1.0_migres_eval200.jsonl --configs bm25,dense,hybrid --k 20 \
    --out docs/eval/musique --resume
$BQ eval narrativeqa --data $D/narrativeqa/qaps_dev.jsonl --books 5 --configs bm25,dense,hybrid --k 20 \
    --out docs/eval/narrativeqa --resume
