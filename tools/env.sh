# Source me: creates ./.venv on first use and keeps it installed (torch CPU build by default).
# FLOWMATCH_TORCH overrides the torch requirement, e.g. FLOWMATCH_TORCH="torch==2.13.0" or "torch" for CUDA.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
"$PY" - <<'PYEOF' || { echo "flowmatch needs Python >= 3.10 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.10+" >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 10))
PYEOF
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
want="$(cat setup.py settings.ini | sha1sum | cut -c1-16) ${FLOWMATCH_TORCH:-torch==2.13.0}"
if [ "$(cat .venv/.flowmatch-installed 2>/dev/null || true)" != "$want" ]; then
  echo "flowmatch: installing into .venv (first run only)..." >&2
  python -m pip install -q --disable-pip-version-check -U pip setuptools wheel packaging
  python -m pip install -q --disable-pip-version-check "${FLOWMATCH_TORCH:-torch==2.13.0}"
  python -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > .venv/.flowmatch-installed
fi
