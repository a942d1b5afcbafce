#!/usr/bin/env bash
# The whole test suite: notebooks in sync with the library and README, every notebook, then pytest (real-browser tests
# included: they need Debian's chromium, installed here when this runs as root, else the tests say how to install it).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "flowmatch: installing chromium for the real-browser tests (apt-get)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
source "$(dirname "$0")/env.sh"
export PYTHONHASHSEED=0 MPLBACKEND=Agg HF_HUB_OFFLINE=1
# nbdev_test runs notebooks in parallel: one BLAS/OpenMP thread each avoids oversubscribing the cores (5x slower here)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
snap() { git status --porcelain=v1 -- nbs flowmatch README.md; git diff -- nbs flowmatch README.md | sha1sum; }
before="$(snap)"
nbdev_clean
nbdev_export
python tools/make_readme.py
after="$(snap)"
if [ "$before" != "$after" ]; then
  echo "Out of sync: nbdev_clean / nbdev_export / tools/make_readme.py changed these files (now fixed; review and commit them):" >&2
  git status --porcelain=v1 -- nbs flowmatch README.md >&2
  exit 1
fi
echo "== nbdev_test: each notebook in a fresh process (as a fresh kernel would run it), two at a time"
ls nbs/*.ipynb | xargs -P 2 -I{} sh -c 's=$(date +%s); if nbdev_test --path "{}" >/tmp/nbtest.$$.log 2>&1; then echo "ok   {} $(( $(date +%s)-s ))s"; else cat /tmp/nbtest.$$.log; echo "FAIL {}"; exit 1; fi' \
  || { echo "nbdev_test failed (see above)" >&2; exit 1; }
echo "== pytest"
python -m pytest tests "$@"
