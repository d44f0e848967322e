#!/usr/bin/env bash
# Answers side by side (bookqa eval-answers) over the stored development runs' questions and rankings
# (docs/eval/locomo: LoCoMo conv-26/30; docs/eval/narrativeqa: the NarrativeQA dev questions that have
# the default reranker's ranking). The first variant is today's default (0.5B, prose, the default
# reranker's top 3): every other is paired against it. Books come from the evaluation library that the
# runs built (<home>/eval). Resumable: run it again to finish what is missing; VARIANTS picks a subset
# (names as below), DATASETS the datasets.
set -euo pipefail

main() {
    cd "$(dirname "$0")/../../.."
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export BOOKQA_THREADS=${BOOKQA_THREADS:-1}  # one llama.cpp thread: these ran beside another one-thread job
    local D=qr_trained_refine  # the CPU default's ranking (qr_mode full)
    local -A spec=(
        [default]="style:prose,evidence:$D"
        [short]="style:short,evidence:$D"
        [short-bm25]="style:short,evidence:bm25"
        [short-hybrid]="style:short,evidence:hybrid"
        [short-qr]="style:short,evidence:qr"
        [short-1.5b]="style:short,evidence:$D,model:qwen2.5-coder-1.5b"
        [prose-1.5b]="style:prose,evidence:$D,model:qwen2.5-coder-1.5b"
    )
    local order=${VARIANTS:-default short short-1.5b short-bm25 short-qr short-hybrid prose-1.5b}
    for ds in ${DATASETS:-locomo narrativeqa}; do
        local args=(--variant "default=${spec[default]}")
        for v in $order; do
            [ "$v" = default ] || args+=(--variant "$v=${spec[$v]}")
        done
        .venv/bin/python -m bookqa eval-answers docs/eval/$ds --out docs/eval/answers/$ds "${args[@]}"
    done
}
main "$@"
