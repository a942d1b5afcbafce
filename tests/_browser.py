"""What the real-browser tests share: Debian's chromium driven by Playwright (no `playwright install`), and a local server.

A missing browser is a failure, not a skip: the README's test command (tools/test.sh) installs chromium when it can, and the
message says how to install it otherwise."""
import functools, http.server, shutil, threading
from contextlib import contextmanager
import pytest
from flowmatch.launch import free_port

CHROMIUM = shutil.which('chromium')
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run']

def require_browser():
    "Fail with the command that fixes it when chromium or Playwright is missing."
    if CHROMIUM is None:
        pytest.fail('chromium is not installed: run `sudo apt-get install -y chromium` (tools/test.sh does it when run '
                    'as root), then the tests again', pytrace=False)
    try: from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('playwright is not installed: run `pip install -e ".[dev]"` (tools/test.sh does it)', pytrace=False)
    return sync_playwright

@contextmanager
def browser():
    "A headless Debian chromium through Playwright."
    sync_playwright = require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=30_000)
        try: yield b
        finally: b.close()

@contextmanager
def serve(folder):
    "Serve `folder` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."
    handler = functools.partial(_Quiet, directory=str(folder))
    srv = _Server(('127.0.0.1', free_port()), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}/'
    finally: srv.shutdown(); srv.server_close()

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address): pass  # a browser that drops a connection it no longer needs
