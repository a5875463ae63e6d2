#!/usr/bin/env bash
# Issue 10's study: the default EPNAS against its paper preset, PNAS, TPE and random search (with weight
# sharing) at equal compute, then the ablation of each of its mechanisms, on a Fashion-MNIST proxy.
# One results folder; re-running resumes it (finished runs and stand-alone trainings are cached), and
# `ablation` reuses the runs `main` finished. The committed copy (studies/results/...) holds the
# readable results only (results.md, results.json, *.png).
#   bash studies/compare_equal_compute.sh main       # 5 samplers x 5 seeds, ~4 h on a 2-core CPU
#   bash studies/compare_equal_compute.sh ablation   # seeds 0-2: + re-scoring on, warm-up off, the paper's
#                                                    # selection, parent weight + diverse draw off
#                                                    # (epnas-surrogate-only); ranking of 30 architectures
#   bash studies/compare_equal_compute.sh reuse      # seeds 0-2: epnas, epnas-reuse (recorded values kept,
#                                                    # issue 23's option), random
#   bash studies/compare_equal_compute.sh zero-cost  # issue 24: epnas, tpe, random, 5 seeds, every trial scored by
#                                                    # the ranking benchmark's best estimator (--estimator jacob_cov)
#                                                    # instead of supernet training; its own folder (...-zero-cost)
#   bash studies/compare_equal_compute.sh all        # main and ablation, in that order
# Proxy task: 5,000 training images (stratified) shrunk to 14x14; the full validation and test splits
# (6,000 / 10,000) shrunk alike. Macro space, 5 layers; K=4, 2 iterations (44 trials per schedule).
# Equal compute: EPNAS/PNAS variants run their schedule; TPE and random run until they have spent (in
# multiply-adds, warm-up and re-scoring included) what the default EPNAS spent with the same seed.
# Every run's chosen network is trained stand-alone with 2 training seeds.
set -euo pipefail
# Passive OpenMP waits: with spinning threads a trial ran 10-40x slower on two shared cores (as in .ci/run).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
out=${OUT:-studies/runs}/compare-equal-compute-fashion
common=(--space macro --dataset fashion-mnist --max-train 5000 --image-size 14 --layers 5 --k 4 --iterations 2
        --channels 16 --budget-kind compute --top 2 --final-epochs 8 --final-channels 32
        --final-seeds 2 --quiet --out "$out" --workers "${WORKERS:-1}")  # WORKERS=2: runs side by side
main=epnas,epnas-paper,pnas,tpe,random
ablation=$main,epnas-rescore,epnas-no-warmup,epnas-paper-selection,epnas-surrogate-only
results=studies/results/compare-equal-compute-fashion
# Both write results.* into "$out"; each copies its own into the committed folder.
run_main() {
  epnas compare "${common[@]}" --seeds 5 --samplers "$main" --ranking-n 0
  mkdir -p "$results" && cp "$out"/results.md "$out"/results.json "$out"/*.png "$results"/
}
run_ablation() {  # seeds 0-2 (the main samplers' runs are reused from `main`)
  epnas compare "${common[@]}" --seeds 3 --samplers "$ablation" --ranking-n 30
  mkdir -p "$results"/ablation && cp "$out"/results.md "$out"/results.json "$out"/*.png "$results"/ablation/
}
run_reuse() {  # seeds 0-2 (epnas and random reused from `main` when it ran)
  epnas compare "${common[@]}" --seeds 3 --samplers epnas,epnas-reuse,random --ranking-n 0
  mkdir -p "$results"/reuse && cp "$out"/results.md "$out"/results.json "$out"/*.png "$results"/reuse/
}
run_zero_cost() {  # issue 24: the same proxy task and budget rule, the zero-cost estimator for every sampler
  local zc=("${common[@]}")
  zc[${#zc[@]}-3]="$out-zero-cost"  # --out: its own studies (run settings differ from main's)
  epnas compare "${zc[@]}" --seeds 5 --samplers epnas,tpe,random --estimator jacob_cov --ranking-n 0
  mkdir -p "$results"-zero-cost && cp "$out"-zero-cost/results.md "$out"-zero-cost/results.json "$out"-zero-cost/*.png "$results"-zero-cost/
}
case "${1:-main}" in
  main) run_main ;;
  ablation) run_ablation ;;
  reuse) run_reuse ;;
  zero-cost) run_zero_cost ;;
  all) run_main; run_ablation ;;
  *) echo "usage: $0 main|ablation|reuse|zero-cost|all" >&2; exit 2 ;;
esac
