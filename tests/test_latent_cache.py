"Kill -9 an encoding LatentCache.build in a separate process, resume it, and compare with an uninterrupted build."
import json, signal, subprocess, sys, time
import numpy as np, pytest, torch
from torch.utils.data import TensorDataset
from flowmatch.vae import VAE
from flowmatch.latents import LatentCache

ENCODE = '''
import sys, time, torch
from torch.utils.data import Dataset, TensorDataset
from flowmatch.vae import VAE
from flowmatch.latents import LatentCache

class Slow(Dataset):
    "Sleeps on every read so the parent can kill the build while it runs."
    def __init__(self, ds, delay): self.ds, self.delay, self.num_classes = ds, delay, ds.num_classes
    def __len__(self): return len(self.ds)
    def __getitem__(self, i): time.sleep(self.delay); return self.ds[i]

root, data, vae_dir, delay = sys.argv[1:5]
ds = TensorDataset(*torch.load(data)); ds.num_classes = 10
LatentCache.build(root, Slow(ds, float(delay)), VAE.from_pretrained(vae_dir), batch_size=8, shard_size=16, progress=False)
'''

def _shard(name): return int(name[len('shard_'):len('shard_') + 5])

def _setup(tmp_path, n, seed, script_name, script):
    "n random 3x16x16 images with labels saved for a child process, a tiny VAE saved beside them, and the child's script."
    torch.manual_seed(seed)
    x, y = torch.rand(n, 3, 16, 16) * 2 - 1, torch.arange(n) % 10
    torch.save((x, y), tmp_path / 'data.pt')
    VAE.from_preset('tiny').save_pretrained(tmp_path / 'vae')
    (tmp_path / script_name).write_text(script)
    ds = TensorDataset(x, y); ds.num_classes = 10
    return ds

@pytest.mark.timeout(300)
def test_kill_and_resume(tmp_path):
    ds = _setup(tmp_path, 96, 0, 'encode.py', ENCODE)
    root = tmp_path / 'cache'
    proc = subprocess.Popen([sys.executable, str(tmp_path / 'encode.py'), str(root), str(tmp_path / 'data.pt'),
                             str(tmp_path / 'vae'), '0.04'])
    try:
        deadline = time.time() + 240
        while len(list(root.glob('shard_*.npy'))) < 2:
            assert proc.poll() is None, f'the encoder exited (code {proc.returncode}) before it could be killed'
            assert time.time() < deadline, 'no shard appeared in time'
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = {f.name: f.stat().st_mtime_ns for f in root.glob('shard_*.npy')}
    assert 2 <= len(done) < 6, f'kill came too late to test resuming: {sorted(done)}'
    with pytest.raises(RuntimeError, match='incomplete'): LatentCache(root)

    vae = VAE.from_pretrained(tmp_path / 'vae')
    with pytest.warns(UserWarning, match=f'last held by process {proc.pid} .* which ended without releasing it'):
        resumed = LatentCache.build(root, ds, vae, batch_size=8, shard_size=16, progress=False)  # the dead build's lock
    finished = {_shard(n) for n in done}
    assert finished.isdisjoint(resumed.encoded_shards), 'finished shards were encoded again'
    assert sorted(finished | set(resumed.encoded_shards)) == list(range(6))
    for n, t in done.items(): assert (root / n).stat().st_mtime_ns == t, f'{n} was rewritten'
    print(f'killed after shards {sorted(finished)} of 6; the resumed build encoded {resumed.encoded_shards}')
    assert not list(root.glob('.*.tmp')), 'temporary files of the killed run were left behind'

    full = LatentCache.build(tmp_path / 'full', ds, vae, batch_size=8, shard_size=16, progress=False)
    for a, b in zip(resumed.gather(np.arange(96), normalize=False), full.gather(np.arange(96), normalize=False)):
        assert torch.equal(a, b)
    assert resumed.manifest == full.manifest
    LatentCache(root, vae=vae, dataset=ds)  # opens and validates


TWO_PROCESSES = '''
import sys, torch
from accelerate import debug_launcher
from torch.utils.data import TensorDataset
from flowmatch.vae import VAE
from flowmatch.latents import LatentCache

def main(root, data, vae_dir):
    ds = TensorDataset(*torch.load(data)); ds.num_classes = 10
    LatentCache.build(root, ds, VAE.from_pretrained(vae_dir), batch_size=8, shard_size=16, progress=False)

debug_launcher(main, args=tuple(sys.argv[1:4]), num_processes=2)  # forks before any computation in this process
'''

@pytest.mark.timeout(300)
def test_two_processes(tmp_path):
    ds = _setup(tmp_path, 80, 1, 'two.py', TWO_PROCESSES)
    subprocess.run([sys.executable, str(tmp_path / 'two.py'), str(tmp_path / 'two'), str(tmp_path / 'data.pt'),
                    str(tmp_path / 'vae')], check=True, timeout=240)
    vae = VAE.from_pretrained(tmp_path / 'vae')
    two = LatentCache(tmp_path / 'two', vae=vae, dataset=ds)
    who = [json.loads((two.root / f'shard_{i:05d}.json').read_text())['encoded_by'] for i in range(5)]
    assert who == ['0/2', '1/2', '0/2', '1/2', '0/2']
    one = LatentCache.build(tmp_path / 'one', ds, vae, batch_size=8, shard_size=16, progress=False)
    assert torch.equal(two.gather(np.arange(80))[0], one.gather(np.arange(80))[0])
    assert two.manifest == one.manifest
