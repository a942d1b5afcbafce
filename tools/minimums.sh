#!/usr/bin/env bash
# Check the minimum versions that settings.ini declares: a venv (.venv-min) gets every `name>=X` requirement pinned to
# `name==X` (the oldest release flowmatch claims to support), then every notebook runs with nbdev_test there.
#   bash tools/minimums.sh            # all notebooks
#   bash tools/minimums.sh 10_train   # some of them
# torch==X comes from PyPI as a CUDA build (several GB to download); nothing else needs a GPU. The dev tools (nbdev and its
# own fastcore) are installed at their usual versions, and the library's own fastcore minimum is checked with a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MIN_VENV:-.venv-min}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pins=$("$VENV/bin/python" - <<'PY'
import configparser, re
cfg = configparser.ConfigParser(delimiters=['=']); cfg.read('settings.ini')
out = []
for r in cfg['DEFAULT']['requirements'].split():
    m = re.match(r'([A-Za-z0-9_.-]+)>=([0-9.]+)', r)
    if m and m.group(1) != 'fastcore': out.append(f'{m.group(1)}=={m.group(2)}')
    elif not m: out.append(r)
print(' '.join(out))
PY
)
echo "minimums: $pins" >&2
"$VENV/bin/pip" install -q $pins "nbdev==2.4.14" "execnb<0.2" "ghapi<2" ipykernel nbconvert
"$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/pip" list 2>/dev/null | grep -iE "^(torch|diffusers|accelerate|torchmetrics|huggingface.hub|torchdiffeq|ipywidgets|fastcore) "
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
names=("$@"); [ ${#names[@]} -gt 0 ] || names=($(cd nbs && ls *.ipynb | sed 's/\.ipynb$//'))
fail=0
for n in "${names[@]}"; do
  s=$(date +%s)
  if "$VENV/bin/nbdev_test" --path "nbs/$n.ipynb" > "/tmp/minimums_$n.log" 2>&1; then echo "ok   $n $(( $(date +%s)-s ))s"
  else echo "FAIL $n (see /tmp/minimums_$n.log)"; fail=1; fi
done
exit $fail
