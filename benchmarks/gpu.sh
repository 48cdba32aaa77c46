#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, in one run on a GPU machine whose Python has torch
# with CUDA (and transformers); the other packages come as wheels in .whl/ (see docs/benchmarks.md).
# Results go to $OUT (default: runs/gpu).
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)" | tee -a "$OUT/gpu.txt"
# shellcheck disable=SC2086  # VS_TRL_ARGS is a list of arguments
timeout "${VS_TRL_SECONDS:-450}" python3 benchmarks/vs_trl.py --workload llama270m ${VS_TRL_ARGS:---steps 6 --skip 2 --repeats 2} \
  --runs "${RUNS:-trl,grpo-fast,entropic-fast,trl-entropic}" 2>&1 | tee "$OUT/vs_trl.txt"
