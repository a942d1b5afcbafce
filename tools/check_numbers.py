"""Re-execute notebooks and compare the numbers their cells print with the numbers stored in them.

`python tools/check_numbers.py nbs/02_toy.ipynb ...` runs each notebook again in a fresh kernel (`run` of
tools/run_notebooks.py, slow cells included, on a hidden copy beside the notebook, which is left as it is), takes every number
from each code cell's text outputs (stdout, and the text or markdown a cell returns), and compares them with the stored ones,
cell by cell, in order.
Two numbers agree when they differ by at most `--rtol` relative (default 2%) or `--atol`, or by the rounding of the last digit
printed. Numbers known to vary from run to run are not compared: durations (`18.9 s`, `4.4 ms`), speed-ups (`2.4x`), rates,
ports, load averages, file paths (the patterns in VARIABLE), and whole cells listed in VARIABLE_CELLS. `--fresh RUN.ipynb`
compares with an already executed copy instead of running one. Exit status 1 when a number differs; each difference is printed
as `notebook [cell id] stored -> rerun`. Trained results depend on the number of CPU threads, so the kernel runs with
OMP_NUM_THREADS=1 (as tools/test.sh does) unless the environment sets it: store notebooks the same way.
"""
import argparse, os, re, shutil, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parent.parent

# spans of printed text whose numbers change between runs; masked before numbers are read
VARIABLE = [r'\d[\d.,]*\s*(?:s|ms|µs|us|ns|min|h|seconds?|minutes?|hours?)\b',  # durations: "18.9 s", "380 ms"
            r'\d[\d.,]*x\b',                                                # speed-ups: "2.40x"
            r'\d[\d.,]*\s*(?:[kMGT]?FLOP/s|it/s|s/it|images/s|latents/s|steps/s)',  # measured rates
            r'\(median [^)]*\)', r'load average [\d.]+', r'\bport \d+', r'\bpid \d+',
            r'(?<![\w.])(?:~|/|\.\.?/)[\w.~/+-]*[\w/]']                    # file paths (temporary folders, caches)
# (notebook name, cell id) of cells whose numbers all vary from run to run (none so far: the patterns cover the benchmarks)
VARIABLE_CELLS = set()

NUMBER = re.compile(r'(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w])')

def numbers(text:str) -> list:
    "The numbers in `text` as (value, digits after the point), after masking the VARIABLE spans."
    for pat in VARIABLE: text = re.sub(pat, ' ', text)
    out = []
    for m in NUMBER.finditer(text):
        s = m.group().replace(',', '')
        mant = re.split('[eE]', s)[0]
        decimals = len(mant.split('.')[1]) if '.' in mant else 0
        exp = int(re.split('[eE]', s)[1]) if re.search('[eE]', s) else 0
        out.append((float(s), decimals - exp))
    return out

def cell_text(cell) -> str:
    "What a code cell printed: its stdout streams and the text (or markdown) of its results."
    parts = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream':
            if o.get('name') == 'stdout': parts.append(o.get('text', ''))
        elif o.get('output_type') in ('execute_result', 'display_data'):
            data = o.get('data', {})
            parts.append(data.get('text/markdown') or data.get('text/plain') or '')
    return ''.join(''.join(p) if isinstance(p, list) else p for p in parts)

def agree(a:tuple, b:tuple, rtol:float, atol:float) -> bool:
    "Two printed numbers agree within the tolerances or the rounding of their last printed digits."
    (x, dx), (y, dy) = a, b
    rounding = 0.5 * 10.0 ** -min(dx, dy)
    return abs(x - y) <= max(atol, rtol * max(abs(x), abs(y)), rounding * 1.0001)

def compare(stored, fresh, rtol:float=0.02, atol:float=0., name:str='') -> list:
    "Differences between the printed numbers of two executions of one notebook: a list of messages."
    fresh_cells = {c.get('id'): c for c in fresh.cells if c.cell_type == 'code'}
    problems = []
    for c in stored.cells:
        if c.cell_type != 'code' or (name, c.get('id')) in VARIABLE_CELLS: continue
        where = f"{name} [cell {c.get('id')}]"
        if c.get('id') not in fresh_cells:
            problems.append(f'{where}: not in the rerun'); continue
        old, new = numbers(cell_text(c)), numbers(cell_text(fresh_cells[c.get('id')]))
        if len(old) != len(new):
            problems.append(f'{where}: {len(old)} numbers stored, {len(new)} printed now: '
                            f'{cell_text(c).strip()[:200]!r} -> {cell_text(fresh_cells[c.get("id")]).strip()[:200]!r}')
            continue
        for a, b in zip(old, new):
            if not agree(a, b, rtol, atol): problems.append(f'{where}: {a[0]:g} -> {b[0]:g}')
    return problems

def rerun(path:Path, timeout:int=3600):
    "A fresh execution of the notebook at `path`, run as a copy beside it (same folder, so relative paths hold)."
    sys.path.insert(0, str(ROOT / 'tools'))
    from run_notebooks import run
    copy = path.with_name(f'.{path.name}.check')   # hidden, and not *.ipynb: nbdev and the tests do not see it
    shutil.copyfile(path, copy)
    try:
        run(copy, timeout)
        return nbformat.read(copy, as_version=4)
    finally: copy.unlink(missing_ok=True)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--rtol', type=float, default=0.02, help='relative tolerance (default 0.02)')
    p.add_argument('--atol', type=float, default=0., help='absolute tolerance (default 0)')
    p.add_argument('--timeout', type=int, default=3600, help='seconds per cell')
    p.add_argument('--fresh', type=Path, help='an executed copy to compare with, instead of a rerun (one notebook)')
    a = p.parse_args(argv)
    for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ.setdefault(k, '1')   # the kernel inherits them
    if a.fresh and len(a.notebooks) != 1: p.error('--fresh compares one notebook')
    problems = []
    for nb in a.notebooks:
        stored = nbformat.read(nb, as_version=4)
        fresh = nbformat.read(a.fresh, as_version=4) if a.fresh else rerun(nb.resolve(), a.timeout)
        found = compare(stored, fresh, a.rtol, a.atol, nb.name)
        n = sum(len(numbers(cell_text(c))) for c in stored.cells if c.cell_type == 'code')
        print(f'{nb}: {n} printed numbers, {len(found)} differ', flush=True)
        problems += found
    for m in problems: print('  ' + m)
    return 1 if problems else 0

if __name__ == '__main__': sys.exit(main())
