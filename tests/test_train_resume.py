"A training run killed with SIGKILL and resumed from its last checkpoint gives the same losses and weights as an uninterrupted run."
import json, os, signal, subprocess, sys, time, textwrap
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 60, 10

SCRIPT = textwrap.dedent('''
    import os, sys, time, torch, torch.nn as nn
    from safetensors.torch import save_model
    from flowmatch.train import Trainer, TrainConfig
    out, resume, pause = sys.argv[1], sys.argv[2] == 'resume', float(os.environ.get('STEP_PAUSE', 0))

    class Points(torch.utils.data.Dataset):
        "232 unlabelled 2-D points: 14 micro-batches of 16 per epoch, so checkpoints fall mid-epoch."
        def __init__(self): self.x = torch.randn(232, 2, generator=torch.Generator().manual_seed(1)) * 0.5 + 1
        def __len__(self): return len(self.x)
        def __getitem__(self, i): return self.x[i], -1

    class Tiny(nn.Module):
        "MLP velocity with dropout, so the global torch RNG must be restored too."
        def __init__(self):
            super().__init__(); self.net = nn.Sequential(nn.Linear(3, 32), nn.SiLU(), nn.Dropout(0.1), nn.Linear(32, 2))
        def forward(self, x, t):
            if pause: time.sleep(pause)
            return self.net(torch.cat([x, t[:, None]], 1))

    torch.manual_seed(0)
    cfg = TrainConfig(max_steps=%d, batch_size=16, grad_accum=2, lr=1e-2, warmup_steps=5, lr_schedule='cosine', min_lr_ratio=0.1,
                      ema_decay=0.9, coupling='ot', time_sampler='logit_normal', checkpoint_every=%d, keep_last=2, output_dir=out,
                      progress=False, log_every=3)  # the log is written every 3 steps: a kill leaves steps past the checkpoint
    tr = Trainer(Tiny(), Points(), cfg).fit(resume=True if resume else None)
    save_model(tr.unwrapped_model, os.path.join(out, 'final.safetensors'))
    save_model(tr.ema_model, os.path.join(out, 'final_ema.safetensors'))
''' % (STEPS, EVERY))


def _env(**kw):
    return {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'PYTHONHASHSEED': '0', **kw}

def _log(out):
    f = out / 'log.jsonl'
    if not f.exists(): return []
    recs = []
    for line in f.read_text().splitlines():
        try: recs.append(json.loads(line))
        except json.JSONDecodeError: break  # torn last line of a killed run
    return recs

def _latest(out):
    d = out / 'checkpoints'
    done = [int(p.name[5:]) for p in d.glob('step_*') if (p / 'trainer_state.json').exists()] if d.exists() else []
    return max(done, default=0)

def _run(script, out, mode, **env):
    r = subprocess.run([sys.executable, str(script), str(out), mode], cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.timeout(240)
def test_sigkill_and_resume_matches_uninterrupted(tmp_path):
    script = tmp_path / 'train_tiny.py'; script.write_text(SCRIPT)
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    _run(script, full, 'fresh')

    # The same run, slowed down so that it can be killed between two checkpoints.
    p = subprocess.Popen([sys.executable, str(script), str(cut), 'fresh'], cwd=ROOT, env=_env(STEP_PAUSE='0.03'),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 150
    while time.time() < deadline:
        k, logged = _latest(cut), len(_log(cut))
        if k >= 2 * EVERY and logged >= k + 3: break
        assert p.poll() is None, f'run ended before it could be killed: {p.stderr.read().decode()[-2000:]}'
        time.sleep(0.01)
    else: pytest.fail('no mid-run checkpoint appeared in time')
    os.kill(p.pid, signal.SIGKILL); p.wait(); p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    k, logged = _latest(cut), [r['step'] for r in _log(cut)]
    assert EVERY <= k < STEPS and max(logged) > k, (k, max(logged))  # the killed run got past its last checkpoint

    # A save interrupted at the next checkpoint leaves only a temporary folder: it must be ignored, then cleaned up.
    torn = cut / 'checkpoints' / f'.tmp_step_{k + EVERY:08d}'
    torn.mkdir(); (torn / 'model.safetensors').write_bytes(b'half written')
    r = _run(script, cut, 'resume')
    assert f'resumed from {cut}/checkpoints/step_{k:08d}' in r.stdout + r.stderr
    assert not torn.exists()

    a, b = _log(full), _log(cut)
    assert [x['step'] for x in a] == [x['step'] for x in b] == list(range(1, STEPS + 1))
    diff = max(abs(x['loss'] - y['loss']) for x, y in zip(a, b))
    assert diff <= 1e-6, f'losses differ by {diff}'
    assert [x['lr'] for x in a] == [x['lr'] for x in b]
    for name in ('final.safetensors', 'final_ema.safetensors'):
        wa, wb = load_file(full / name), load_file(cut / name)
        assert wa.keys() == wb.keys()
        for key in wa: torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=1e-6, msg=f'{name}:{key}')
    assert len(list((cut / 'checkpoints').glob('step_*'))) == 2  # keep_last
