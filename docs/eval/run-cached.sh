#!/usr/bin/env bash
# Cached-chunk QR (bookqa/rerank/cached.py) next to the stored full-prompt rows of the development runs:
# the same questions, the same stored candidates (hybrid top-20), the same settings as run-rerank.sh, so
# only the new configurations are computed (--resume keeps every stored row). Each book's chunk cache is
# filled lazily in the evaluation library, as `bookqa ask` fills it. Resumable: stop and start at will.
#   qr_cached / qr_cascade                  the plain shipped heads over cached chunks / + full prompt over the top 10
#   qr_trained_cached / qr_trained_cascade  the same with the shipped adapter (the CPU default's ranker)
#   qr_cached_adapted                       qr_cached with the cached pass's own question-side adapter
#                                           (BOOKQA_QR_CACHED_ADAPTER, default auto: the shipped one)
#   qr_trained_cascade_adapted              qr_cached_adapted, then the shipped adapter's full prompt over the
#                                           top 10: what `bookqa ask --qr-mode cascade` runs out of the box
# DATASETS=locomo-depth runs the cached pass beyond the first stage's top 20 instead: hybrid, qr_cached and
# qr_cached_adapted over the hybrid top K for each K in KS (default "50 200"; 200 = every chunk of a
# conversation), each K its own run under docs/eval/cached-depth/locomo-k<K>/ (the candidates differ).
# DATASETS=locomo-int8 ranks LoCoMo with int8 cache rows (BOOKQA_QR_CACHE_DTYPE=int8, half the bytes of
# bfloat16) under docs/eval/cached-int8/locomo: hybrid, qr_cached and qr_cached_adapted over the same
# hybrid top 20, to set beside the bfloat16 rows of docs/eval/locomo.
# EXTRA adds eval options, e.g. EXTRA=--rank-all to rank the questions without gold chunks too (for eval-answers).
set -euo pipefail

main() {
    . "$(dirname "$0")/data-dir.sh"
    D=$(data_dir "$0" "${1:-}" "locomo/, musique/, narrativeqa/") || exit 2
    cd "$(dirname "$0")/../.."
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export BOOKQA_RERANK_PERMUTATIONS=1 BOOKQA_RERANK_REFINE=0 BOOKQA_RERANKER_ADAPTER=none BOOKQA_DTYPE=float32
    # the generator and answer style the stored runs recorded (these runs write no answers)
    export BOOKQA_GENERATOR_MODEL=${BOOKQA_GENERATOR_MODEL:-qwen2.5-coder-0.5b} BOOKQA_ANSWER_STYLE=${BOOKQA_ANSWER_STYLE:-prose}
    export BOOKQA_QR_CACHE_DTYPE=${BOOKQA_QR_CACHE_DTYPE:-bfloat16} BOOKQA_QR_CASCADE_TOP=${BOOKQA_QR_CASCADE_TOP:-10}
    export BOOKQA_QR_CACHED_ADAPTER=${BOOKQA_QR_CACHED_ADAPTER:-auto}
    BQ=".venv/bin/python -m bookqa"
    T="--trained ${TRAINED:-qwen2.5-coder-0.5b-qr-lora}"
    X="--exclude-ids docs/eval/qr-head-detection-ids.txt ${EXTRA:-}"
    C=${CONFIGS:-qr,qr_trained,qr_trained_refine,qr_cached,qr_trained_cached,qr_cascade,qr_trained_cascade,qr_cached_adapted,qr_trained_cascade_adapted}
    for ds in ${DATASETS:-locomo musique narrativeqa}; do
        case $ds in
            locomo) $BQ eval locomo --data $D/locomo/locomo10.json --books 2 --per-book 1000 --configs "$C" --k 20 $X $T \
                        --out docs/eval/locomo --resume --no-answers ;;
            musique) $BQ eval musique --data $D/musique/musique_ans_v1.0_migres_eval200.jsonl --sample 200 --configs "$C" \
                        --k 20 $X $T --out docs/eval/musique --resume --no-answers ;;
            narrativeqa) $BQ eval narrativeqa --data $D/narrativeqa/qaps_dev.jsonl --books 5 --per-book 1000 --configs "$C" \
                        --k 20 $X $T --out docs/eval/narrativeqa --resume --no-answers ;;
            locomo-int8) BOOKQA_QR_CACHE_DTYPE=int8 $BQ eval locomo --data $D/locomo/locomo10.json --books 2 \
                        --per-book 1000 --configs hybrid,qr_cached,qr_cached_adapted --k 20 $X \
                        --out docs/eval/cached-int8/locomo --resume --no-answers ;;
            locomo-depth) for k in ${KS:-50 200}; do
                        $BQ eval locomo --data $D/locomo/locomo10.json --books 2 --per-book 1000 \
                            --configs hybrid,qr_cached,qr_cached_adapted --k $k $X --out docs/eval/cached-depth/locomo-k$k \
                            --resume --no-answers
                    done ;;
        esac
    done
}
main "$@"; exit
