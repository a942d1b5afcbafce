"""Build flowmatch's documentation site from the notebooks: `python tools/build_docs.py` writes it into `_docs/`.

The site has the README as its home page, one page per chapter (the notebook with its stored outputs and pictures; hidden
cells and nbdev's `#|` directives left out), the API reference of each module (nbdev's `show_doc` of every public name), and
navigation in chapter order, with search. It is built with mkdocs, mkdocs-material and mkdocs-jupyter (no Quarto needed);
the notebooks are not executed. Open `_docs/index.html` through a web server, e.g. `python -m http.server -d _docs`.
"""
import argparse, configparser, importlib, inspect, json, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'

def settings():
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    return cfg['DEFAULT']

def chapters():
    "(notebook path, module name, title) of every chapter, in chapter order."
    out = []
    for nb in sorted(NBS.glob('[0-9][0-9]_*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        mod = re.match(r'#\|\s*default_exp\s+(\S+)', ''.join(cells[0]['source'])).group(1)
        title = next(''.join(c['source']).split('\n')[0].lstrip('# ').strip() for c in cells if c['cell_type'] == 'markdown')
        out.append((nb, mod, title))
    return out

def _clean_notebook(src:Path, dst:Path):
    "A copy of the notebook for reading: no hidden cells, no `#|` directive lines, no empty code cells."
    nb = json.loads(src.read_text())
    cells = []
    for c in nb['cells']:
        text = ''.join(c['source'])
        if c['cell_type'] == 'code':
            if re.search(r'^#\|\s*(hide|default_exp)\b', text, re.M): continue
            if re.search(r'^#\|\s*hide_input\b', text, re.M): c['metadata']['jupyter'] = {'source_hidden': True}
            text = '\n'.join(l for l in text.splitlines() if not l.startswith('#|')).strip('\n')
            if not text and not c.get('outputs'): continue
            c['source'] = text
        cells.append(c)
    nb['cells'] = cells
    dst.write_text(json.dumps(nb))

def _api_page(mod:str, repo_url:str) -> str:
    "Markdown of the API reference of `flowmatch.<mod>`: each public name, and the methods of its classes."
    from nbdev.showdoc import show_doc, BasicMarkdownRenderer
    m = importlib.import_module(f'flowmatch.{mod}')
    parts = [f'# flowmatch.{mod}\n', (m.__doc__ or '').strip() + '\n']
    def doc(obj):
        try: md = show_doc(obj, renderer=BasicMarkdownRenderer)._repr_markdown_()
        except Exception:  # annotations show_doc cannot evaluate (inherited from a library): the plain signature
            try: sig = str(inspect.signature(obj))
            except (TypeError, ValueError, NameError): sig = '(...)'
            md = f'---\n\n### {obj.__name__}\n\n```python\n{obj.__name__}{sig}\n```\n\n*{inspect.getdoc(obj) or ""}*\n'
        return md.replace('#LNone', '')
    for name in getattr(m, '__all__', []):
        obj = getattr(m, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            parts.append(f'---\n\n### {name}\n\n```python\n{name} = {_short_repr(obj)}\n```\n'); continue
        parts.append(doc(obj))
        if inspect.isclass(obj):
            for k, v in vars(obj).items():
                # a property, a plain method, a classmethod, or fastcore's @patch(cls_method=True) wrapper (`.f`)
                f = v.fget if isinstance(v, property) else getattr(v, '__func__', getattr(v, 'f', v))
                if k.startswith('_') or not inspect.isfunction(f) or not f.__module__.startswith('flowmatch'): continue
                parts.append(doc(f).replace(f'### {f.__name__}\n', f'### {name}.{k}\n'))
    return '\n\n'.join(parts)

def _short_repr(v, n=300):
    r = repr(v)
    return r if len(r) <= n else r[:n] + ' ...'

def _home(repo_url:str, in_site:set) -> str:
    "The README as the home page: pictures from images/, other repository files linked on GitHub."
    md = (ROOT / 'README.md').read_text()
    md = re.sub(r'<!--.*?-->\n*', '', md, flags=re.S)
    def link(m):
        text, target = m.group(1), m.group(2)
        if re.match(r'[a-z]+://|#|mailto:', target): return m.group(0)
        if target.startswith('nbs/images/'): return f'{text}(images/{target[len("nbs/images/"):]})'
        if target in in_site: return f'{text}({in_site[target]})'
        return f'{text}({repo_url}/blob/main/{target})'
    return re.sub(r'(!?\[[^\]]*\])\(([^)\s]+)\)', link, md)

def build(out:Path=ROOT / '_docs', strict:bool=True) -> Path:
    "Build the site into `out` (replaced); returns it."
    s = settings()
    repo_url = s['git_url']
    chaps = chapters()
    with tempfile.TemporaryDirectory(prefix='flowmatch_docs_') as d:
        docs = Path(d) / 'docs'
        (docs / 'chapters').mkdir(parents=True); (docs / 'api').mkdir()
        shutil.copytree(NBS / 'images', docs / 'images')
        in_site = {f'nbs/{nb.name}': f'chapters/{nb.name}' for nb, _, _ in chaps}
        (docs / 'index.md').write_text(_home(repo_url, in_site))
        nav_ch, nav_api = [], []
        for nb, mod, title in chaps:
            _clean_notebook(nb, docs / 'chapters' / nb.name)
            (docs / 'api' / f'{mod}.md').write_text(_api_page(mod, repo_url))
            nav_ch.append({f'{nb.stem[:2]} {title}': f'chapters/{nb.name}'})
            nav_api.append({f'flowmatch.{mod}': f'api/{mod}.md'})
        config = dict(
            site_name=s['title'], site_description=s['description'], repo_url=repo_url, docs_dir=str(docs),
            site_dir=str(out.resolve()), use_directory_urls=False, strict=strict,
            theme=dict(name='material', font=False, features=['navigation.sections', 'navigation.top', 'search.suggest']),
            nav=[{'Home': 'index.md'}, {'Chapters': nav_ch}, {'API reference': nav_api}],
            plugins=['search', {'mkdocs-jupyter': dict(include_source=True, execute=False, ignore_h1_titles=False,
                                                       include_requirejs=False)}],
            markdown_extensions=['attr_list', 'tables', 'fenced_code', 'toc',
                                 {'pymdownx.arithmatex': dict(generic=True)}],
            extra_javascript=['https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js'])
        (Path(d) / 'mkdocs.yml').write_text(json.dumps(config, indent=1))  # JSON is YAML
        r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-q', '-f', str(Path(d) / 'mkdocs.yml')],
                           capture_output=True, text=True)
        if r.returncode: raise RuntimeError(f'mkdocs build failed:\n{r.stdout}\n{r.stderr}')
    return out

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', type=Path, default=ROOT / '_docs', help='folder for the site (default: _docs)')
    a = p.parse_args(argv)
    out = build(a.out)
    pages = len(list(out.rglob('*.html')))
    print(f'flowmatch docs: {pages} pages in {out}; view with `python -m http.server -d {out}`')
    return 0

if __name__ == '__main__': sys.exit(main())
