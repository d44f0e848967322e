#!/usr/bin/env bash
# Cached-chunk QR beyond the first stage's top 20: the question pass over the hybrid top K for larger K (K at
# least the number of chunks = the whole conversation), against the hybrid order on the same candidates.
# Each K is its own run (the candidates differ), under docs/eval/cached-depth/<dataset>-k<K>/; the chunk
# caches are the evaluation library's, shared with run-cached.sh. Resumable.
#   DATA          the data folder (locomo/)
#   KS            the depths to run (default "50 200")
#   BOOKQA_QR_CACHED_ADAPTER  the cached pass's adapter (default: the shipped one, auto)
set -euo pipefail

main() {
    . "$(dirname "$0")/data-dir.sh"
    D=$(data_dir "$0" "${1:-}" "locomo/") || exit 2
    cd "$(dirname "$0")/../.."
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export BOOKQA_RERANK_PERMUTATIONS=1 BOOKQA_RERANK_REFINE=0 BOOKQA_RERANKER_ADAPTER=none BOOKQA_DTYPE=float32
    export BOOKQA_GENERATOR_MODEL=${BOOKQA_GENERATOR_MODEL:-qwen2.5-coder-0.5b} BOOKQA_ANSWER_STYLE=${BOOKQA_ANSWER_STYLE:-prose}
    export BOOKQA_QR_CACHE_DTYPE=${BOOKQA_QR_CACHE_DTYPE:-bfloat16} BOOKQA_QR_CACHED_ADAPTER=${BOOKQA_QR_CACHED_ADAPTER:-auto}
    BQ=".venv/bin/python -m bookqa"
    for k in ${KS:-50 200}; do
        $BQ eval locomo --data $D/locomo/locomo10.json --books 2 --per-book 1000 --configs hybrid,qr_cached,qr_cached_adapted \
            --k $k --exclude-ids docs/eval/qr-head-detection-ids.txt --out docs/eval/cached-depth/locomo-k$k --resume --no-answers
    done
}
main "$@"; exit
