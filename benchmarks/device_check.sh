#!/usr/bin/env bash
# Issue 26's GPU checks as one prepared script for a lent device (run by the `device` tool from the repo
# root; ~10 of its 15 minutes). What comes back under $OUT: one log per check.
#
# Here, once:   bash benchmarks/device_check.sh --fetch-wheels     (optuna and its needs, for Python 3.12)
# On a device:  run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=600)
set -uo pipefail
WHEELS=(optuna==5.1.0 alembic==1.20.1 sqlalchemy==2.1.9 colorlog==6.12.0 mako==1.4.3 greenlet
        optuna-dashboard==0.21.0 bottle==0.13.4 graphviz==0.21)  # the search loop writes dashboard notes
if [ "${1:-}" = "--fetch-wheels" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" && ls .whl
  exit $?
fi
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheels missing: run 'bash benchmarks/device_check.sh --fetch-wheels' first, carry .whl"; exit 2; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
check() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $?, $((SECONDS - t0)) s; tail:"; tail -n 6 "$OUT/$name.log" | sed 's/^/   /'
}
check cuda-tests 150 python3 -m pytest -q -x tests/test_gpu.py tests/test_surrogate.py -p no:cacheprovider
check cuda-data 60 python3 -m pytest -q tests/test_data.py -k cuda -p no:cacheprovider
check planning 90 python3 benchmarks/bench_planning.py --device cuda --repeats 3
check end-to-end 200 python3 benchmarks/bench_search_end_to_end.py --device cuda --levels 3
check graphs 120 python3 benchmarks/gpu_search.py --cuda-graphs --levels 2 --trials-per-level 4 --compare-reps 2
check micro 60 python3 benchmarks/bench_supernet.py --space micro --device cuda
check checkpoint 60 python3 benchmarks/bench_checkpoint.py --device cuda --trials 12 --every 1 4
