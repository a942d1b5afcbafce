"""The 2-D explorer in a real browser: JupyterLab runs a small notebook in headless Chromium, the t slider is moved with the
keyboard, and the plot must change. Writes a screenshot to out/browser/explorer.png and prints the slider response time."""
import json, os, secrets, shutil, signal, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import pytest
from flowmatch.launch import free_port

ROOT = Path(__file__).resolve().parent.parent
SHOT = ROOT / 'out' / 'browser' / 'explorer.png'
CHROMIUM = shutil.which('chromium')
try: from playwright.sync_api import sync_playwright
except ImportError: sync_playwright = None

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason='chromium is not installed: apt-get install chromium'),
    pytest.mark.skipif(sync_playwright is None, reason='playwright is not installed: pip install playwright'),
]

CELLS = [
    "import torch\ntorch.set_num_threads(1)\nfrom flowmatch.widgets import explore_2d",
    "ex = explore_2d('gaussian', 'eight_gaussians', method='euler', nfe=20, n=200, train_steps=600)",
]
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run']

def _notebook(path):
    cells = [dict(cell_type='code', id=f'c{i}', metadata={}, execution_count=None, outputs=[], source=s) for i, s in enumerate(CELLS)]
    nb = dict(cells=cells, nbformat=4, nbformat_minor=5,
              metadata=dict(kernelspec=dict(display_name='Python 3 (ipykernel)', language='python', name='python3')))
    path.write_text(json.dumps(nb))

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

# In the page: note when a key goes down, and when the plot's <img> has loaded a new src after that.
WATCH = """(sel) => {
  const img = document.querySelector(sel);
  const w = window.__fm = {src: img.src, t0: null, t1: null};
  if (!window.__fmKey) { window.__fmKey = true;
    document.addEventListener('keydown', () => { if (window.__fm.t0 === null) window.__fm.t0 = performance.now(); }, true); }
  img.addEventListener('load', function done() {
    if (img.src !== w.src && w.t0 !== null) { w.t1 = performance.now(); img.removeEventListener('load', done); } });
}"""

@pytest.mark.timeout(150)   # every wait below is bounded too; this only stops a hung browser
def test_explorer_slider_in_jupyterlab():
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix='fm-browser-'))
    nbdir, cfg = tmp / 'notebooks', tmp / 'config'
    (cfg / 'labconfig').mkdir(parents=True); nbdir.mkdir()
    _notebook(nbdir / 'explorer.ipynb')
    # no network: no news feed, no update check, and no pop-up asking about them
    (cfg / 'jupyter_server_config.json').write_text(json.dumps(
        {'LabApp': {'news_url': None, 'check_for_updates_class': 'jupyterlab.NeverCheckForUpdate'}}))
    (cfg / 'labconfig' / 'page_config.json').write_text(json.dumps(
        {'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_RUNTIME_DIR=str(tmp / 'runtime'),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / 'workspaces'), JUPYTERLAB_SETTINGS_DIR=str(tmp / 'settings'),
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', MPLBACKEND='Agg', HF_HUB_OFFLINE='1')
    cmd = [sys.executable, '-m', 'jupyterlab', '--allow-root', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           f'--ServerApp.token={token}', f'--notebook-dir={nbdir}']
    log = open(tmp / 'jupyter.log', 'w')
    proc = subprocess.Popen(cmd, cwd=nbdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(f'http://127.0.0.1:{port}/api/status?token={token}', proc, timeout=40)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=30_000)
            try:
                page = browser.new_page(viewport={'width': 1280, 'height': 900})
                page.set_default_timeout(30_000)
                page.goto(f'http://127.0.0.1:{port}/lab/tree/explorer.ipynb?token={token}', wait_until='domcontentloaded')
                page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=40_000)
                page.wait_for_selector('#jp-main-statusbar >> text=/Idle/', timeout=40_000)   # kernel started
                page.get_by_role('menuitem', name='Run', exact=True).click()
                page.locator('[data-command="runmenu:run-all"]').click()
                plot = 'img.fm-plot'
                page.wait_for_function(f"(() => {{ const i = document.querySelector('{plot}'); return i && i.src && i.naturalWidth > 0; }})()",
                                       timeout=60_000)
                page.locator(plot).scroll_into_view_if_needed()
                before = page.locator(plot).screenshot()
                src0 = page.locator(plot).get_attribute('src')
                handle = page.locator('.fm-t-slider .noUi-handle')
                handle.focus()
                readout = lambda: float(page.locator('.fm-t-slider .widget-readout').inner_text())
                times = []
                # Home: t = 1 -> 0; each PageUp: +0.05, one state of the 20-step Euler grid; ten of them reach t = 0.5
                for k, key in enumerate(['Home'] + ['PageUp'] * 10):
                    page.evaluate(WATCH, plot)
                    page.keyboard.press(key)
                    page.wait_for_function('window.__fm.t1 !== null', timeout=15_000)
                    times.append(page.evaluate('window.__fm.t1 - window.__fm.t0'))
                    if k == 0:
                        assert readout() == 0.0
                        assert page.locator(plot).get_attribute('src') != src0
                        assert page.locator(plot).screenshot() != before, 'the plot looks the same after moving the t slider'
                assert readout() == 0.5
                SHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOT))
            finally: browser.close()
        print(f'\nscreenshot: {SHOT}')
        print(f'slider response in the browser (key down -> new plot loaded), {len(times)} moves: median {sorted(times)[len(times)//2]:.0f} ms, '
              f'max {max(times):.0f} ms')
        print(f'whole test: {time.monotonic() - t_start:.1f} s')
        assert max(times) < 2000
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)   # the server and its kernel: a process group this test started
            try: proc.wait(timeout=10)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=5)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
