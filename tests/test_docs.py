"""The documentation site in a real browser: `tools/build_docs.py` builds it, and headless Chromium opens the home page, every
chapter page and every API page; every picture must load, every internal link must resolve, and every picture a chapter
stores in its outputs must be on its page."""
import json, re, subprocess, sys, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import pytest
from _browser import browser, serve, require_browser

ROOT = Path(__file__).resolve().parent.parent

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    require_browser()
    out = tmp_path_factory.mktemp('site')
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--out', str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return out

def _stored_pictures(nb:Path) -> int:
    "Pictures in the stored outputs of the cells a reader sees (hidden cells are left out of the site)."
    n = 0
    for c in json.loads(nb.read_text())['cells']:
        if c['cell_type'] == 'code' and not re.search(r'^#\|\s*hide\b', ''.join(c['source']), re.M):
            n += sum('image/png' in o.get('data', {}) for o in c.get('outputs', []))
    return n

PAGE = """() => ({
  title: document.title,
  h1: [...document.querySelectorAll('article h1')].map(h => h.textContent.trim()),
  images: [...document.images].map(i => ({src: i.currentSrc.slice(0, 80), ok: i.complete && i.naturalWidth > 0})),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
})"""

@pytest.mark.timeout(600)
def test_site_pages_pictures_and_links(site):
    chapters = sorted((ROOT / 'nbs').glob('[0-9][0-9]_*.ipynb'))
    apis = sorted((site / 'api').glob('*.html'))
    assert len(apis) == len(chapters), 'one API page per chapter module'
    with serve(site) as base, browser() as b:
        page = b.new_page()
        pages = ['index.html'] + [f'chapters/{nb.stem}.html' for nb in chapters] + [f'api/{p.name}' for p in apis]
        seen_links, problems = set(), []
        for rel in pages:
            resp = page.goto(base + rel, wait_until='load')
            assert resp.status == 200, f'{rel}: HTTP {resp.status}'
            info = page.evaluate(PAGE)
            bad = [i['src'] for i in info['images'] if not i['ok']]
            if bad: problems.append(f'{rel}: pictures that do not load: {bad}')
            if rel.startswith('chapters/'):
                nb = ROOT / 'nbs' / (Path(rel).stem + '.ipynb')
                want = _stored_pictures(nb)
                have = sum(i['src'].startswith('data:image/png') for i in info['images'])
                if have < want: problems.append(f'{rel}: {have} of the {want} stored pictures are on the page')
            seen_links |= {l.split('#')[0] for l in info['links'] if l.startswith(base)}
        for link in sorted(seen_links):
            try:
                with urllib.request.urlopen(link) as r: assert r.status == 200
            except (urllib.error.URLError, AssertionError) as e: problems.append(f'broken internal link {link}: {e}')
        home = page.goto(base + 'index.html') and page.evaluate(PAGE)
    assert not problems, '\n'.join(problems)
    unlinked = {base + p for p in pages} - seen_links - {base + 'index.html'}
    assert not unlinked, f'pages the navigation does not link to: {sorted(unlinked)}'
    assert home['h1'] and 'flowmatch' in home['title']
