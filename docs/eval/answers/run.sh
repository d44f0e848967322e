#!/usr/bin/env bash
# Answers side by side (bookqa eval-answers) over the stored development runs' questions and rankings
# (docs/eval/locomo: LoCoMo conv-26/30; docs/eval/narrativeqa: the NarrativeQA dev questions, ranked by
# `EXTRA=--rank-all docs/eval/run-cached.sh`). The first variant is today's default (0.5B, prose, the
# default reranker's top 3): every other is paired against it. Books come from the evaluation library that
# the runs built (<home>/eval). Resumable: run it again to finish what is missing; VARIANTS picks a subset
# (names as below), DATASETS the datasets. A checked variant (check:judge|embedder) reuses the answer text
# of its unchecked twin when that is stored and only checks the citations. remote-1.5b is answered by a
# real llama_cpp.server on 127.0.0.1 serving the 1.5B, which this script starts and stops.
# DATASETS=locomo-adversarial answers LoCoMo's category 5 (the answer is not in the conversation) from
# docs/eval/locomo-adversarial (hybrid rankings: docs/eval/locomo-adversarial.sh; today's default there is
# default-hybrid); the report gives how often each variant says the passages do not hold the answer, or
# (checked variants) is backed by no passage. REPORT_ONLY=1 rewrites the reports from the stored answers. refusal:example adds a worked refusal to the prompt. keep:S
# gives the generator the share S of each passage that the default QR ranker's heads attend to most.
set -euo pipefail

main() {
    cd "$(dirname "$0")/../../.."
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export BOOKQA_THREADS=${BOOKQA_THREADS:-1}  # one llama.cpp thread: these ran beside another one-thread job
    local D=qr_trained_refine  # the CPU default's ranking (qr_mode full)
    local port=${REMOTE_PORT:-8011}
    local B15="model:qwen2.5-coder-1.5b"
    local -A spec=(
        [default]="style:prose,evidence:$D"
        [short]="style:short,evidence:$D"
        [short-bm25]="style:short,evidence:bm25"
        [short-hybrid]="style:short,evidence:hybrid"
        [short-qr]="style:short,evidence:qr"
        [short-1.5b]="style:short,evidence:$D,$B15"
        [prose-1.5b]="style:prose,evidence:$D,$B15"
        [short-1.5b-bm25]="style:short,evidence:bm25,$B15"
        [short-1.5b-judge]="style:short,evidence:$D,$B15,check:judge"
        [short-1.5b-embedder]="style:short,evidence:$D,$B15,check:embedder"
        [short-1.5b-both]="style:short,evidence:$D,$B15,check:both"
        [short-1.5b-top1]="style:short,evidence:$D,$B15,top:1"
        [short-1.5b-top5]="style:short,evidence:$D,$B15,top:5"
        [short-1.5b-top10]="style:short,evidence:$D,$B15,top:10"
        [short-1.5b-rank]="style:short,evidence:$D,$B15,order:rank"
        [short-1.5b-rank-both]="style:short,evidence:$D,$B15,order:rank,check:both"
        [short-1.5b-top5-both]="style:short,evidence:$D,$B15,top:5,check:both"
        [short-1.5b-keep50]="style:short,evidence:$D,$B15,keep:0.5"
        [short-1.5b-keep50-both]="style:short,evidence:$D,$B15,keep:0.5,check:both"
        [short-1.5b-top5-keep60]="style:short,evidence:$D,$B15,top:5,keep:0.6"
        [short-1.5b-top5-keep60-both]="style:short,evidence:$D,$B15,top:5,keep:0.6,check:both"
        [default-hybrid]="style:prose,evidence:hybrid"
        [short-1.5b-hybrid]="style:short,evidence:hybrid,$B15"
        [short-1.5b-refusal]="style:short,evidence:$D,$B15,refusal:example"
        [short-1.5b-refusal-both]="style:short,evidence:$D,$B15,refusal:example,check:both"
        [short-1.5b-hybrid-both]="style:short,evidence:hybrid,$B15,check:both"
        [short-1.5b-hybrid-refusal]="style:short,evidence:hybrid,$B15,refusal:example"
        [short-1.5b-hybrid-refusal-both]="style:short,evidence:hybrid,$B15,refusal:example,check:both"
        [remote-1.5b]="style:short,evidence:$D,generator:remote,base_url:http://127.0.0.1:$port/v1,$B15"
    )
    local order=${VARIANTS:-default short short-1.5b short-bm25 short-qr short-hybrid prose-1.5b}
    server=""  # global: the EXIT trap runs after main has returned
    if [[ " $order " == *" remote-1.5b "* ]]; then
        local gguf
        gguf=$(.venv/bin/python -c "from bookqa.settings import Settings; from bookqa.weights import gguf_file; print(gguf_file('qwen2.5-coder-1.5b', Settings()))")
        .venv/bin/python -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" --n_ctx 4096 \
            --n_threads "$BOOKQA_THREADS" --verbose False > "${TMPDIR:-/tmp}/bookqa-answers-server.log" 2>&1 &
        server=$!
        trap '[ -n "$server" ] && kill $server 2>/dev/null' EXIT
        for _ in $(seq 120); do
            curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
            sleep 1
        done
    fi
    for ds in ${DATASETS:-locomo narrativeqa}; do
        local first=default
        [ "$ds" = locomo-adversarial ] && first=default-hybrid  # no reranker ran there
        local args=(--variant "$first=${spec[$first]}")
        for v in $order; do
            [ "$v" = "$first" ] || args+=(--variant "$v=${spec[$v]}")
        done
        local only=()
        [ "$ds" = locomo-adversarial ] && only=(--category 5)
        [ -n "${REPORT_ONLY:-}" ] && only+=(--report-only)
        .venv/bin/python -m bookqa eval-answers docs/eval/$ds --out docs/eval/answers/$ds "${only[@]}" "${args[@]}"
    done
}
main "$@"; exit  # bash reads a script as it runs: an edit during a long run must not run its tail
