#!/usr/bin/env bash
# Phase 2 of the development run: the reranking configurations, on growing nested samples of the
# questions of phase 1 (run-firststage.sh), on the same stored candidates (hybrid top-20). QR needs the
# shipped heads file; the pointwise baseline runs while the script waits for it. Every pass is resumable
# and only adds what is missing, so the script can be stopped and started again at any time.
set -euo pipefail

main() {  # the whole script is read before it runs, so editing it cannot disturb a running copy
    # The development data (locomo/, musique/, narrativeqa/): the first argument or $BOOKQA_DATA.
    . "$(dirname "$0")/data-dir.sh"
    D=$(data_dir "$0" "${1:-}" "locomo/, musique/, narrativeqa/") || exit 2
    cd "$(dirname "$0")/../.."
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    # "qr" stays the plain one-order QR this run began with (its stored rows); the CPU default since
    # session 5 (one order + the top 5 refined, docs/order-robust-qr.md) is the configuration qr_refine.
    export BOOKQA_RERANK_PERMUTATIONS=1 BOOKQA_RERANK_REFINE=0 BOOKQA_RERANKER_ADAPTER=none
    # float32 as every stored row: "auto" is bfloat16 on CPUs with AVX512-BF16 (rerank/qr.py)
    export BOOKQA_DTYPE=float32
    BQ=".venv/bin/python -m bookqa"  # progress bars with ETA go to the log
    HEADS=bookqa/heads/qwen2.5-coder-0.5b.json
    # qr_trained is the LoRA adapter that ships in the package (what a user ranks with by default,
    # reranker_adapter=auto), and qr_trained_refine that plus its top 5 refined (the default's full shape).
    # A shipped adapter survives a fresh machine; a bookqa train output folder can replace it
    # (TRAINED=/path/to/out, see docs/training-qwen2.5-coder-0.5b.md), written to another --out.
    TRAINED=${TRAINED:-qwen2.5-coder-0.5b-qr-lora}
    T="--trained $TRAINED"
    QT=,qr_trained,qr_trained_refine

    # Keep the first-stage reports over every question before the reports are narrowed to the samples.
    for ds in locomo musique narrativeqa; do
        if [ -f docs/eval/$ds/$ds-report.md ] && [ ! -f docs/eval/$ds/firststage-all-report.md ]; then
            cp docs/eval/$ds/$ds-report.md docs/eval/$ds/firststage-all-report.md
            cp docs/eval/$ds/$ds-report.json docs/eval/$ds/firststage-all-report.json
        fi
    done

    FIRST=bm25,dense,hybrid
    # The items the shipped heads were detected on are left out, so QR is scored on unseen questions.
    X="--exclude-ids docs/eval/qr-head-detection-ids.txt"
    pass() {  # $1 = configs, $2 = LoCoMo per conversation, $3 = MuSiQue sample, $4 = NarrativeQA per book
        $BQ eval locomo --data $D/locomo/locomo10.json --books 2 --per-book "$2" --configs "$1" --k 20 $X $T \
            --out docs/eval/locomo --resume
        $BQ eval musique --data $D/musique/musique_ans_v1.0_migres_eval200.jsonl --sample "$3" --configs "$1" --k 20 $X $T \
            --out docs/eval/musique --resume
        $BQ eval narrativeqa --data $D/narrativeqa/qaps_dev.jsonl --books 5 --per-book "$4" --configs "$1" --k 20 $X $T \
            --out docs/eval/narrativeqa --resume
    }
    # While the heads file is missing: the pointwise baseline (needs no heads) on the smallest samples.
    for spec in "5 10 2" "10 20 4"; do
        [ -s "$HEADS" ] && break
        pass $FIRST,pointwise $spec
    done
    until [ -s "$HEADS" ]; do echo "$(date +%T) waiting for $HEADS"; sleep 120; done
    pass $FIRST,qr,qr_fused 10 20 4                               # QR (+ answers with QR's top-3)
    pass $FIRST,qr,qr_fused,qr_prefix,pointwise$QT 10 20 4        # the costly baselines on the same questions
    pass $FIRST,qr,qr_refine,qr_fused,qr_prefix,pointwise$QT 10 20 4
    pass $FIRST,qr,qr_refine,qr_fused,qr_prefix,pointwise$QT 25 50 10
    pass $FIRST,qr,qr_refine,qr_fused,qr_prefix,pointwise$QT 1000 200 1000  # everything selected in phase 1
}

main "$@"
