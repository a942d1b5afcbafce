"Repository hygiene: what nbdev and the README generator promise, checked on every notebook."
import json, os, re, shutil, subprocess, sys, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = sorted((ROOT/'nbs').glob('*.ipynb'))

def test_there_are_notebooks(): assert len(NBS) >= 2

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_notebook_hygiene(nb):
    d = json.loads(nb.read_text())
    assert d['metadata'].get('kernelspec', {}).get('name') == 'python3', f'{nb.name}: set the python3 kernelspec'
    ids = [c.get('id') for c in d['cells']]
    assert all(ids) and len(set(ids)) == len(ids), f'{nb.name}: every cell needs a unique id'
    assert nb.stat().st_size < 1_500_000, f'{nb.name} is {nb.stat().st_size/1e6:.1f} MB: split the chapter or shrink figures'
    first = ''.join(d['cells'][0]['source'])
    m = re.match(r'#\|\s*default_exp\s+(\S+)', first)
    if nb.name != 'index.ipynb':
        assert m, f'{nb.name}: first cell must be `#| default_exp <module>`'
        assert nb.stem.split('_', 1)[1] == m.group(1).split('.')[-1], f'{nb.name} exports {m.group(1)}: names must match'
        assert (ROOT/'flowmatch'/(m.group(1).replace('.', '/') + '.py')).exists()

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_readme_has_exactly_two_commands():
    cmds = re.findall(r'```sh\n(.*?)```', (ROOT/'README.md').read_text(), re.S)
    assert [c.strip() for c in cmds] == ['bash tools/demo.sh', 'bash tools/test.sh']
    assert 'tools/test.sh' in (ROOT/'.ci'/'run').read_text()

def test_installed_wheel_ships_the_configs(tmp_path):
    "A non-editable install (`pip install flowmatch`) finds configs/*.yaml by name: they ship inside the package."
    src = tmp_path / 'src'  # the tracked files only, as in a fresh clone (an in-tree build/ folder could hide a missing file)
    for f in subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split('\0'):
        if f and (ROOT / f).is_file(): (src / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT / f, src / f)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path / 'w'), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel, = (tmp_path / 'w').glob('flowmatch-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith('flowmatch/configs/'))
    assert shipped == sorted(f'flowmatch/configs/{p.name}' for p in (ROOT / 'configs').glob('*.yaml')), shipped
    assert not any(n.startswith(('benchmarks/', 'tests/', 'nbs/')) for n in names)
    zipfile.ZipFile(wheel).extractall(tmp_path / 'site')
    code = ("import flowmatch, flowmatch.config as c; print(flowmatch.__file__); "
            "print(c.config_path('digits')); print(c.load_config('celebahq_dit').train.lr)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=str(tmp_path / 'site')))
    assert r.returncode == 0, r.stderr[-3000:]
    where, path, lr = r.stdout.split()
    assert where.startswith(str(tmp_path / 'site')), where            # the installed copy, not this checkout
    assert path == str((tmp_path / 'site' / 'flowmatch' / 'configs' / 'digits.yaml').resolve()), path
    assert float(lr) == 5e-5

def test_readme_pictures_exist():
    links = re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', (ROOT/'README.md').read_text())
    assert links, 'the README shows no picture'
    for link in links: assert (ROOT/link).is_file(), f'README links {link}, which is not in the repository'


def test_library_names_are_defined():
    "Every name the exported modules use is defined or imported there: an import that only a notebook's test cell makes fails here."
    from pyflakes import api, messages, reporter
    class Collect(reporter.Reporter):
        def __init__(self): self.found = []
        def flake(self, m): self.found.append(m)
        def unexpectedError(self, f, msg): self.found.append(f'{f}: {msg}')
        def syntaxError(self, f, msg, *a): self.found.append(f'{f}: {msg}')
    rep = Collect()
    for f in sorted((ROOT / 'flowmatch').glob('*.py')): api.checkPath(str(f), rep)
    bad = [str(m) for m in rep.found if isinstance(m, str) or isinstance(m, (messages.UndefinedName, messages.UndefinedExport,
                                                                             messages.UndefinedLocal))]
    assert not bad, '\n'.join(bad)


def test_layout_targets():
    "Where code lives (tools/layout.py): no private name crosses modules, one module per public name, chapters import only earlier ones, short export cells, light notebooks, short lines, no gap in the numbering."
    sys.path.insert(0, str(ROOT / 'tools'))
    import layout
    res = layout.measure()
    for key, target in layout.TARGETS.items():
        v = res[key]
        if isinstance(v, float): assert v <= target, f'{key}: {v:.1%} > {target:.0%}'
        else: assert len(v) <= target, f'{key}: ' + '; '.join(v)


@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_no_saved_widget_state(nb):
    "No saved widget state (JupyterLab does not use it) and no stored widget view (it cannot render without that state): a reader sees the explorers' static pictures. `tools/run_notebooks.py` stores notebooks this way."
    d = json.loads(nb.read_text())
    assert 'widgets' not in d['metadata'], f'{nb.name} stores widget state: rerun it with tools/run_notebooks.py'
    views = [c['id'] for c in d['cells'] for o in c.get('outputs', []) if 'application/vnd.jupyter.widget-view+json' in o.get('data', {})]
    assert not views, f'{nb.name}: cells {views} store widget views that cannot render: rerun it with tools/run_notebooks.py'


def test_package_files():
    "The license ships, every MANIFEST.in line matches files, and the extras of settings.ini reach setup.py."
    import configparser, glob
    assert (ROOT / 'LICENSE').read_text().lstrip().startswith('Apache License')
    for line in (ROOT / 'MANIFEST.in').read_text().splitlines():
        words = line.split()
        if not words: continue
        if words[0] == 'include': found = [f for w in words[1:] for f in glob.glob(str(ROOT / w))]
        elif words[0] == 'recursive-include': found = [f for w in words[2:] for f in (ROOT / words[1]).rglob(w)]
        else: pytest.fail(f'MANIFEST.in: unexpected line {line!r}')
        assert found, f'MANIFEST.in line {line!r} matches no file'
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini')
    extras = [k[:-len('_requirements')] for k in cfg['DEFAULT'] if k.endswith('_requirements')]
    assert set(extras) >= {'dev', 'notebooks', 'parquet', 'lpips', 'inception'}, extras
    assert all(f"'{e}'" in (ROOT / 'setup.py').read_text() for e in extras), 'setup.py must offer every extra'
