"""Write README.md (and its pictures) from nbs/index.ipynb: the notebook is the source, never edit README.md.

`python tools/make_readme.py` rewrites; `--check` exits 1 when README.md is stale."""
import re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parent.parent
NB, README, IMG = ROOT/'nbs'/'index.ipynb', ROOT/'README.md', ROOT/'nbs'/'images'

def render():
    "Markdown of the index notebook: directives removed, hidden cells dropped, figures as files."
    nb = nbformat.read(NB, as_version=4)
    cells = []
    for c in nb.cells:
        src = c.source
        if c.cell_type == 'code':
            if re.search(r'^#\|\s*(hide|export)\b', src, re.M): continue
            if re.search(r'^#\|\s*hide_input\b', src, re.M): src = ''
            src = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
            c.source = src
        cells.append(c)
    nb.cells = cells
    md, res = MarkdownExporter().from_notebook_node(nb, resources={'output_files_dir': 'nbs/images', 'unique_key': 'readme'})
    header = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'
    md = re.sub(r'```\s*\n\s*```\n?', '', md)  # the emptied source of hide_input cells
    md = re.sub(r'\n[ \t]+\n', '\n\n', md)
    md = md.replace('](images/', '](nbs/images/')  # pictures linked from the notebook, seen from the repository root
    return header + re.sub(r'\n{3,}', '\n\n', md).strip() + '\n', res.get('outputs', {})

def main(check=False):
    md, figs = render()
    stale = not README.exists() or README.read_text() != md
    stale |= any(not (ROOT/k).exists() or (ROOT/k).read_bytes() != v for k, v in figs.items())
    if check: 
        if stale: print('README.md is stale: run `python tools/make_readme.py`', file=sys.stderr)
        return int(stale)
    if stale:
        README.write_text(md)
        for k, v in figs.items(): (ROOT/k).parent.mkdir(parents=True, exist_ok=True); (ROOT/k).write_bytes(v)
    return 0

if __name__ == '__main__': sys.exit(main('--check' in sys.argv))
