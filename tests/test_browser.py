"""The explorers chapter (nbs/20_widgets.ipynb) in a real browser: JupyterLab opens a copy of it in headless Chromium.

Before it is run, each explorer's output must show a static picture (and no "Error displaying widget"). After Run All, no cell
may fail, all three explorers must render, and moving each explorer's t slider with the keyboard must change its picture.
Writes screenshots to out/browser/ and prints the slider response times."""
import json, os, re, secrets, shutil, signal, subprocess, sys, tempfile, time, urllib.request
from contextlib import contextmanager
from pathlib import Path
import pytest
from flowmatch.launch import free_port
from _browser import browser

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / 'nbs' / '20_widgets.ipynb'
SHOTS = ROOT / 'out' / 'browser'
EXPLORERS = {'fm-explorer-2d': '2-D explorer', 'fm-explorer-images': 'image explorer', 'fm-explorer-paths': 'path viewer'}

def _wait_for_server(url, proc, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: raise RuntimeError(f'JupyterLab exited with code {proc.returncode}')
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: pass
        time.sleep(0.3)
    raise TimeoutError(f'JupyterLab did not answer at {url} within {timeout} s')

# In the page: note when a key goes down, and when the explorer's picture has loaded a new src after that.
WATCH = """(sel) => {
  const img = document.querySelector(sel);
  const w = window.__fm = {src: img.src, t0: null, t1: null};
  if (!window.__fmKey) { window.__fmKey = true;
    document.addEventListener('keydown', () => { if (window.__fm.t0 === null) window.__fm.t0 = performance.now(); }, true); }
  img.addEventListener('load', function done() {
    if (img.src !== w.src && w.t0 !== null) { w.t1 = performance.now(); img.removeEventListener('load', done); } });
}"""
BUSY = "() => [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].some(p => p.textContent.includes('*'))"
ERRORS = """() => [...document.querySelectorAll(['.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'].join(','))]
  .map(e => e.textContent).filter(t => /Error|Traceback/.test(t))"""

@pytest.fixture
def lab():
    with jupyterlab() as v: yield v

@contextmanager
def jupyterlab():
    "JupyterLab on 127.0.0.1 over a copy of the explorers chapter; yields (url of the notebook, tmp folder)."
    tmp = Path(tempfile.mkdtemp(prefix='fm-browser-'))
    nbdir, cfg = tmp / 'notebooks', tmp / 'config'
    (cfg / 'labconfig').mkdir(parents=True); nbdir.mkdir()
    shutil.copy(NB, nbdir / 'explorers.ipynb')
    # no network: no news feed, no update check, and no pop-up asking about them
    (cfg / 'jupyter_server_config.json').write_text(json.dumps(
        {'LabApp': {'news_url': None, 'check_for_updates_class': 'jupyterlab.NeverCheckForUpdate'}}))
    (cfg / 'labconfig' / 'page_config.json').write_text(json.dumps(
        {'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    # every cell in the page (JupyterLab leaves cells out of view out of the page by default)
    tracker = tmp / 'settings' / '@jupyterlab' / 'notebook-extension' / 'tracker.jupyterlab-settings'
    tracker.parent.mkdir(parents=True); tracker.write_text(json.dumps({'windowingMode': 'none'}))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_RUNTIME_DIR=str(tmp / 'runtime'),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / 'workspaces'), JUPYTERLAB_SETTINGS_DIR=str(tmp / 'settings'),
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', HF_HUB_OFFLINE='1', IN_TEST='1')  # IN_TEST: the chapter's small sizes
    env.pop('MPLBACKEND', None)   # the kernel draws inline, as for a reader
    cmd = [sys.executable, '-m', 'jupyterlab', '--allow-root', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           f'--ServerApp.token={token}', f'--notebook-dir={nbdir}']
    log = open(tmp / 'jupyter.log', 'w')
    proc = subprocess.Popen(cmd, cwd=nbdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(f'http://127.0.0.1:{port}/api/status?token={token}', proc, timeout=40)
        yield f'http://127.0.0.1:{port}/lab/tree/explorers.ipynb?token={token}', tmp
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)   # the server and its kernel: a process group this test started
            try: proc.wait(timeout=10)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=5)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)

@pytest.mark.timeout(480)   # every wait below is bounded too; this only stops a hung browser
def test_explorers_chapter_in_jupyterlab(lab):
    url, tmp = lab
    t_start = time.monotonic()
    with browser() as b:
        page = b.new_page(viewport={'width': 1280, 'height': 900})
        page.set_default_timeout(30_000)
        page.goto(url, wait_until='domcontentloaded')
        page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=40_000)
        page.wait_for_selector('#jp-main-statusbar >> text=/Idle/', timeout=40_000)   # kernel started
        # not run yet: the stored outputs show the explorers' pictures, and no widget fails to render
        page.wait_for_function("document.querySelectorAll('.jp-OutputArea-output img').length >= 3", timeout=20_000)
        stored = page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea-output img')].filter(i => i.naturalWidth > 0).length")
        assert stored >= 3, f'only {stored} pictures load in the stored outputs'
        body = page.inner_text('.jp-Notebook')
        assert 'Error displaying widget' not in body, 'a stored widget output cannot render: rerun tools/run_notebooks.py'
        assert 'run this cell to make the explorer live' in body.lower() or stored >= 3
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / 'explorers_saved.png'))
        # Run All, then wait until no cell is running
        page.get_by_role('menuitem', name='Run', exact=True).click()
        page.locator('[data-command="runmenu:run-all"]').click()
        page.wait_for_function(BUSY, timeout=30_000)
        end = time.monotonic() + 300
        while page.evaluate(BUSY):
            errors = page.evaluate(ERRORS)
            assert not errors, f'a cell failed: {errors[0][-2000:]}'
            assert time.monotonic() < end, 'the chapter did not finish running within 300 s'
            time.sleep(1)
        errors = page.evaluate(ERRORS)
        assert not errors, f'a cell failed: {errors[0][-2000:]}'
        times = {}
        for cls, name in EXPLORERS.items():
            plot = f'.{cls} img.fm-plot'
            try:
                page.wait_for_function(f"(() => {{ const i = document.querySelector('{plot}'); "
                                       f"return i && i.src && i.naturalWidth > 0; }})()", timeout=30_000)
            except Exception:
                page.screenshot(path=str(SHOTS / 'explorers_failed.png'), full_page=True)
                pytest.fail(f'the {name} did not render (no picture in .{cls} within 30 s after the chapter ran); '
                            f'screenshot: {SHOTS / "explorers_failed.png"}')
            page.locator(plot).first.scroll_into_view_if_needed()
            handle = page.locator(f'.{cls} .fm-t-slider .noUi-handle').first
            handle.focus()
            times[name] = []
            t = float(page.locator(f'.{cls} .fm-t-slider .widget-readout').first.inner_text())
            keys = ('End', 'Home', 'End', 'Home') if t < 1 else ('Home', 'End', 'Home', 'End')  # each moves t
            for key in keys:
                page.evaluate(WATCH, plot)
                page.keyboard.press(key)
                try: page.wait_for_function('window.__fm.t1 !== null', timeout=15_000)
                except Exception: pytest.fail(f'the {name} did not respond to its t slider ({key})')
                times[name].append(page.evaluate('window.__fm.t1 - window.__fm.t0'))
        page.screenshot(path=str(SHOTS / 'explorers_live.png'), full_page=False)
    for name, ts in times.items():
        print(f'\n{name}: slider response (key down -> new picture loaded) median {sorted(ts)[len(ts)//2]:.0f} ms, '
              f'max {max(ts):.0f} ms')
    print(f'whole test: {time.monotonic() - t_start:.1f} s; screenshots in {SHOTS}')
    assert max(max(ts) for ts in times.values()) < 2000
