#!/usr/bin/env bash
# The generative reranking baselines (rankgpt, likert) next to QR on the same stored candidates (hybrid
# top-20) as the development runs: LoCoMo 2 conversations x 5 questions (a subset of run-rerank.sh's
# pass 1) and NarrativeQA 5 books x 2 questions with silver gold (the others listed in
# not-selected-ids.txt). One thread each for torch and llama.cpp (this script ran beside another
# one-thread job on a 2-core machine). Resumable: run it again to finish what is missing.
set -euo pipefail
main() {
    # The development data (locomo/, narrativeqa/): the first argument or $BOOKQA_DATA.
    . "$(dirname "$0")/../data-dir.sh"
    D=$(data_dir "$0" "${1:-}" "locomo/, narrativeqa/") || exit 2
    cd "$(dirname "$0")/../../.."
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false BOOKQA_THREADS=1
    export BOOKQA_RERANKER_ADAPTER=none  # the reranker these runs began with
    export BOOKQA_DTYPE=float32  # as every stored row ("auto" is bfloat16 on CPUs with AVX512-BF16)
    G=docs/eval/generative X=docs/eval/qr-head-detection-ids.txt
    C=bm25,dense,hybrid,qr,rankgpt,likert
    BQ=".venv/bin/python -m bookqa"
    $BQ eval locomo --data $D/locomo/locomo10.json --books 2 --per-book 5 --configs $C --k 20 \
        --exclude-ids $X --no-answers --out $G/locomo --resume
    $BQ eval narrativeqa --data $D/narrativeqa/qaps_dev.jsonl --books 5 --per-book 1000 --configs $C --k 20 \
        --exclude-ids $X $G/narrativeqa/not-selected-ids.txt --no-answers --out $G/narrativeqa --resume
}
main "$@"
