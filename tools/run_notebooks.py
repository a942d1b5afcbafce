"""Re-execute notebooks in a real Jupyter kernel, slow cells included, and store their outputs (the way to refresh them).

`python tools/run_notebooks.py nbs/02_toy.ipynb ...` runs each notebook top to bottom in a fresh `python3` kernel from `nbs/`,
writes the outputs into the notebook and cleans it with nbdev_clean. Widgets are stored as what a reader can see without
running the notebook: no widget state (JupyterLab does not use it), and each widget output keeps only the static picture
the explorers add to it (`ExplorerBase.show`); a widget output without one is dropped.
"""
WIDGET = 'application/vnd.jupyter.widget-view+json'

def static_outputs(nb):
    "Widget outputs as their static pictures: the widget view, which cannot render from a saved notebook, is removed."
    for c in nb.cells:
        if c.cell_type != 'code': continue
        kept = []
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if WIDGET in data:
                if 'image/png' not in data: continue
                del data[WIDGET]
            kept.append(o)
        c.outputs = kept
    nb.metadata.pop('widgets', None)
    return nb
import argparse, subprocess, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

def run(path:Path, timeout:int=3600):
    "Execute `path` in place in a fresh kernel; returns the seconds it took."
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name='python3', store_widget_state=False,
                   resources={'metadata': {'path': str(path.parent)}}).execute()
    nbformat.write(static_outputs(nb), path)
    return time.perf_counter() - t0

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--timeout', type=int, default=3600, help='seconds per cell')
    a = p.parse_args(argv)
    for nb in a.notebooks:
        print(f'{nb}: {run(nb.resolve(), a.timeout):.0f} s', flush=True)
    subprocess.run(['nbdev_clean'], cwd=ROOT, check=True)
    return 0

if __name__ == '__main__': sys.exit(main())
