"""Where code lives, measured: `python tools/layout.py` prints the layout table of the library and its notebooks.

Each row is a count that should stay at its target (tests/test_repo.py checks them):
private names imported across modules, public names defined in two modules, imports of a later chapter's module, export cells
over 80 lines, notebooks over 200 KB, the share of library lines over 100 characters, and gaps in the chapter numbering."""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB, NBS = ROOT / 'flowmatch', ROOT / 'nbs'
TARGETS = dict(private_imports=0, public_names_in_two_modules=0, later_chapter_imports=0, export_cells_over_80_lines=0,
               notebooks_over_200kb=0, long_line_share=0.10, numbering_gaps=0)

def modules():
    "name -> (path, chapter number) of every exported module."
    out = {}
    for f in sorted(LIB.glob('*.py')):
        m = re.search(r'File to edit: \.\./nbs/(\d+)([a-z]?)_\w+\.ipynb', f.read_text())
        if m: out[f.stem] = (f, int(m.group(1)) + 0.5 * bool(m.group(2)))  # '11a' sits between 11 and 12
    return out

def _imports(tree):
    "(imported flowmatch module, [names]) for every import statement of a module, at any depth."
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith('flowmatch'):
            yield n.module.split('.')[1] if '.' in n.module else None, [a.name for a in n.names], n.lineno
        elif isinstance(n, ast.ImportFrom) and n.level: yield n.module, [a.name for a in n.names], n.lineno
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name.startswith('flowmatch.'): yield a.name.split('.')[1], [], n.lineno

def measure() -> dict:
    "The layout figures: each key a list of offenders (or a share), see the module docstring."
    mods, res = modules(), {}
    trees = {m: ast.parse(f.read_text()) for m, (f, _) in mods.items()}
    res['private_imports'] = [f'{m}:{line} imports {src}.{n}' for m, t in trees.items() for src, names, line in _imports(t)
                              for n in names if n.startswith('_') and not n.startswith('__')]
    owners = {}
    for m, t in trees.items():
        for n in ast.walk(t):
            if isinstance(n, ast.Assign) and any(getattr(x, 'id', '') == '__all__' for x in n.targets):
                for name in ast.literal_eval(n.value): owners.setdefault(name, []).append(m)
    res['public_names_in_two_modules'] = [f'{k}: {", ".join(v)}' for k, v in sorted(owners.items()) if len(v) > 1]
    res['later_chapter_imports'] = [f'{m}:{line} imports {src} (chapter {mods[src][1]:g} > {mods[m][1]:g})'
                                    for m, t in trees.items() for src, _, line in _imports(t)
                                    if src in mods and mods[src][1] > mods[m][1]]
    cells = []
    for nb in sorted(NBS.glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and re.match(r'#\|\s*export\b', src) and len(src.splitlines()) > 80:
                cells.append(f'{nb.name}: {c["id"]} ({len(src.splitlines())} lines)')
    res['export_cells_over_80_lines'] = cells
    res['notebooks_over_200kb'] = [f'{nb.name} ({nb.stat().st_size / 1e3:.0f} KB)' for nb in sorted(NBS.glob('*.ipynb'))
                                   if nb.stat().st_size > 200_000]
    lines = [l for f, _ in mods.values() for l in f.read_text().splitlines()]
    res['long_line_share'] = sum(len(l) > 100 for l in lines) / len(lines)
    nums = sorted(int(p.name[:2]) for p in NBS.glob('[0-9][0-9]_*.ipynb'))
    res['numbering_gaps'] = [f'{i:02d}' for i in range(nums[-1] + 1) if i not in nums] + \
                            [f'{i:02d} twice' for i in set(nums) if nums.count(i) > 1]
    return res

def main():
    res = measure()
    print(f"{'':36} {'now':>8} {'target':>8}")
    for k, target in TARGETS.items():
        v = res[k]
        now, tgt = (f'{v:.1%}', f'<= {target:.0%}') if isinstance(v, float) else (str(len(v)), str(target))
        print(f"{k.replace('_', ' '):36} {now:>8} {tgt:>8}")
        if not isinstance(v, float):
            for o in v: print(f'    {o}')
    return 0

if __name__ == '__main__': sys.exit(main())
