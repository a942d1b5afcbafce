#!/usr/bin/env bash
# The GPU benchmark run, for an H100/H200 machine with Python 3.12, torch, accelerate, torchmetrics and torchdiffeq installed but
# not diffusers: bring the missing wheels in .whl/ (see benchmarks/README.md). Writes $OUT/bench.json, bench.log and env.log.
# Usage (from the repository root): OUT=out/bench bash benchmarks/gpu.sh [extra arguments for benchmarks.run]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/bench}
mkdir -p "$OUT"
if compgen -G '.whl/*.whl' > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD \
    || { echo "gpu.sh: installing the wheels in .whl/ failed" >&2; exit 1; }
else
  echo "gpu.sh: no wheels in .whl/; using what is installed" >&2
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true
  python3 - <<'PY'
import importlib
for m in ('torch', 'triton', 'accelerate', 'diffusers', 'huggingface_hub', 'safetensors', 'scipy', 'torchdiffeq', 'torchmetrics',
          'PIL', 'requests', 'regex', 'filelock', 'tqdm', 'flowmatch'):
    try: print(f"{m:16s}", getattr(importlib.import_module(m), '__version__', '?'))
    except Exception as e: print(f"{m:16s} MISSING ({type(e).__name__}: {e})")
PY
} 2>&1 | tee "$OUT/env.log"
python3 -m benchmarks.run --device cuda --out "$OUT/bench.json" "$@" 2>&1 | tee "$OUT/bench.log"
