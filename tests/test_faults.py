"""Fault injection, the way storage and training systems test themselves: the `flowmatch` program killed (SIGKILL) at every
named kill point of the library (`flowmatch.data.fault_point`), every kind of file it writes damaged (cut in half, emptied,
deleted, a byte changed), and a table of bad inputs. Each case must end in the result of an uninterrupted run (bit-identical
logs and weights where resuming promises it) or in one clear line that names the file, key or value; never in a traceback,
never in a silently wrong result.

Speed: every run of the program is a fresh process forked from a server that imported flowmatch, torch and accelerate once
(`multiprocessing`'s forkserver), so a run costs its work, not five seconds of imports. The figures (kill points survived,
corruptions detected, bad inputs, tracebacks, silent wrong results) are printed at the end: `pytest tests/test_faults.py -s`."""
import ast, io, json, multiprocessing as mp, os, re, shutil, signal, subprocess, sys, time, zipfile
from collections import Counter
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
# imported once by the fork server: its children start with everything a run needs already loaded
PRELOAD = ['flowmatch.cli', 'flowmatch.recipe', 'flowmatch.config', 'flowmatch.train', 'flowmatch.latents', 'flowmatch.launch',
           'flowmatch.eval', 'torch._dynamo', 'torch.distributed.run', 'sklearn.datasets', 'diffusers', 'PIL.PngImagePlugin']
ENV = dict(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', HF_HUB_OFFLINE='1', PYTHONHASHSEED='0', TQDM_DISABLE='1')
FIGURES = Counter()  # what this module has shown, printed at the end
KILL_POINTS = ('prepare.image', 'prepare.done', 'encode.shard_meta', 'encode.shard', 'encode.manifest', 'checkpoint.saved',
               'checkpoint.written', 'checkpoint.old_moved', 'checkpoint.renamed', 'checkpoint.deleting', 'log.rewrite',
               'export.old_moved', 'export.renamed', 'export.deleting')


# ---------------------------------------------------------------------------------------------------------------- running
def _child(argv, env, out):
    "In a forked process: `flowmatch argv` with `env`, its stdout and stderr into files in `out`."
    os.environ.update(env)
    for fd, name in ((1, 'stdout'), (2, 'stderr')):
        f = os.open(os.path.join(out, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC); os.dup2(f, fd); os.close(f)
    sys.stdout = open(1, 'w', buffering=1, closefd=False); sys.stderr = open(2, 'w', buffering=1, closefd=False)
    import threading, warnings, tqdm
    warnings.simplefilter('default')
    tqdm.tqdm.set_lock(threading.RLock())  # not tqdm's multiprocessing lock, which a killed run could not release
    from flowmatch.cli import main
    code = main([str(a) for a in argv])
    sys.stdout.flush(); sys.stderr.flush()
    sys.exit(code)  # through multiprocessing's own exit, which releases what the run registered

_CTX = None
def _ctx():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context('forkserver')
        _CTX.set_forkserver_preload(PRELOAD)
    return _CTX

class Run:
    "One run of the program: exit code, stdout, stderr (paths under `tmp` written as <tmp>)."
    def __init__(self, argv, fault=None, tmp=None, wait=True, timeout=120, **env):
        self.out = Path(os.environ.get('TMPDIR', '/tmp')) / f'fm_fault_{os.getpid()}_{time.monotonic_ns()}'
        self.out.mkdir()
        env = {**ENV, **env, **({'FLOWMATCH_FAULT': fault} if fault else {})}
        self.tmp, self.timeout = tmp, timeout
        self.proc = _ctx().Process(target=_child, args=(list(argv), env, str(self.out)))
        self.proc.start()
        self.pid = self.proc.pid
        if wait: self.wait()
    def wait(self):
        self.proc.join(self.timeout)
        if self.proc.is_alive():
            self.proc.kill(); self.proc.join()
            pytest.fail(f'the run did not end in {self.timeout} s: {self.read("stderr")[-2000:]}')
        self.code = self.proc.exitcode
        self.stdout, self.stderr = self.read('stdout'), self.read('stderr')
        shutil.rmtree(self.out, ignore_errors=True)
        FIGURES['runs'] += 1
        if 'Traceback' in self.stderr: FIGURES['tracebacks'] += 1
        return self
    def read(self, name):
        text = (self.out / name).read_text() if (self.out / name).exists() else ''
        return text.replace(str(self.tmp), '<tmp>') if self.tmp else text
    def lines(self, kind): # 'error' or 'warning'
        return [l for l in self.stderr.splitlines() if re.match(rf'flowmatch \w+: {kind}: ', l)]
    def ok(self):
        assert self.code == 0 and 'Traceback' not in self.stderr, (self.code, self.stderr[-3000:])
        return self
    def killed(self, point):
        assert self.code == -signal.SIGKILL, (self.code, self.stderr[-3000:])
        assert re.search(rf'FLOWMATCH_FAULT=\S+: kill process {self.pid} at {re.escape(point)}\n', self.stderr), self.stderr
        return self
    def error(self):
        "The one error line of a refused run (exit code 2, no traceback; other lines only warnings)."
        assert self.code == 2 and 'Traceback' not in self.stderr, (self.code, self.stderr[-3000:])
        errors = self.lines('error')
        assert len(errors) == 1 and len(errors) + len(self.lines('warning')) == len(self.stderr.strip().splitlines()), self.stderr
        return errors[0]

def flowmatch(*argv, **kw): return Run(argv, **kw)


# ------------------------------------------------------------------------------------------------------------- the runs
def toy(out, *more):
    "The issue's A: `toy output_dir=X train.max_steps=20 train.checkpoint_every=5 progress=false`, at a tenth of the size."
    return ['train', 'toy', f'output_dir={out}', 'train.max_steps=20', 'train.checkpoint_every=5', 'progress=false',
            'data.n=256', 'model.hidden=32', 'model.depth=2', 'train.batch_size=16', 'train.keep_last=2',
            'train.log_with=none', *more]

def faces(out, src, root=None, *more):
    "A pixel-space DiT on CelebA-HQ prepared from `src` (a zip of 40 small images), 4 steps."
    return ['train', 'digits', f'output_dir={out}', 'data.name=celebahq', f'data.root={root or Path(out) / "root"}',
            *([f'data.src={src}'] if src else []), 'data.size=16', 'vae.preset=none', 'vae.train.steps=0', 'eval.kind=none',
            'model.patch_size=4', 'model.hidden_size=32', 'model.depth=1', 'model.num_heads=2', 'train.max_steps=4',
            'train.batch_size=8', 'train.checkpoint_every=2', 'train.log_with=none', 'progress=false', *more]

def encode(out, *more):
    "The digits' latent cache with the (untrained, seeded) digits VAE: 1,497 latents in 6 shards."
    return ['encode', 'digits', f'output_dir={out}', 'vae.train.steps=0', 'latents.shard_size=256', 'progress=false', *more]

def _log(run_dir):
    from flowmatch.train import read_log
    return [{k: r.get(k) for k in ('step', 'loss', 'lr', 'grad_norm', 'skipped')} for r in read_log(Path(run_dir) / 'train')]

def same_run(ref, out):
    "Bit-identical per-step log (step, loss, lr, grad norm) and weights (exported EMA, newest checkpoint's model and EMA)."
    from flowmatch.train import latest_checkpoint, checkpoint_problems
    same = _log(ref) == _log(out)
    a, b = latest_checkpoint(Path(ref) / 'train'), latest_checkpoint(Path(out) / 'train')
    same &= a.name == b.name and not checkpoint_problems(b)
    for f in ('model.safetensors', 'ema.safetensors'): same &= (a / f).read_bytes() == (b / f).read_bytes()
    same &= (Path(ref) / 'model' / 'model.safetensors').read_bytes() == (Path(out) / 'model' / 'model.safetensors').read_bytes()
    if not same: FIGURES['silent wrong results'] += 1
    assert same, f'{out} ended elsewhere than the uninterrupted run {ref}'

def same_cache(ref, out):
    "The same latent cache, file for file (manifest, shard metadata and latents)."
    names = lambda d: sorted(p.name for p in Path(d).iterdir() if not p.name.startswith('.'))
    same = names(ref) == names(out) and all((Path(ref) / n).read_bytes() == (Path(out) / n).read_bytes() for n in names(ref))
    if not same: FIGURES['silent wrong results'] += 1
    assert same, f'{out} differs from {ref}'

def no_hidden_leftovers(run_dir):
    from flowmatch.train import checkpoints
    ck = Path(run_dir) / 'train' / 'checkpoints'
    assert not [p.name for p in ck.iterdir() if p.name.startswith('.')], sorted(p.name for p in ck.iterdir())
    assert [p.name for p in checkpoints(Path(run_dir) / 'train')] == sorted(p.name for p in ck.iterdir())

def face_zip(path, n=40, extra=()):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, 'w') as zf:
        for i in range(n):
            b = io.BytesIO(); Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(b, 'PNG')
            zf.writestr(f'faces/{i:05d}.png', b.getvalue())
        for name in extra: zf.writestr(name, b.getvalue())
    return path


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    "Uninterrupted runs to compare with: the toy training, the CelebA-HQ preparation and training, the latent cache."
    d = tmp_path_factory.mktemp('reference')
    zip_ = face_zip(d / 'faces.zip')
    flowmatch(*toy(d / 'toy')).ok()
    flowmatch(*faces(d / 'faces', zip_)).ok()
    flowmatch(*encode(d / 'enc')).ok()
    return dict(toy=d / 'toy', faces=d / 'faces', zip=zip_, cache=d / 'enc' / 'latents')

@pytest.fixture(scope='module', autouse=True)
def figures():
    yield
    report = (f"fault suite: {FIGURES['kill points']} kill points survived (of {len(KILL_POINTS)} in the library, "
              f"{FIGURES['kill runs']} kills); {FIGURES['corruptions']} corruptions detected; {FIGURES['bad inputs']} bad inputs "
              f"answered by their exact line; {FIGURES['tracebacks']} tracebacks and {FIGURES['silent wrong results']} silent "
              f"wrong results in {FIGURES['runs']} runs of the program")
    print('\n' + report)
    if os.environ.get('FLOWMATCH_FAULT_REPORT'): Path(os.environ['FLOWMATCH_FAULT_REPORT']).write_text(report + '\n')


# ------------------------------------------------------------------------------------------------------ the kill points
def test_every_kill_point_of_the_library_is_tested():
    "The points named in flowmatch's code are exactly those this module kills the program at."
    found = set()
    for f in (ROOT / 'flowmatch').glob('*.py'):
        for call in ast.walk(ast.parse(f.read_text())):
            if not isinstance(call, ast.Call): continue
            name = getattr(call.func, 'id', getattr(call.func, 'attr', None))
            if name == 'fault_point' and isinstance(call.args[0], ast.Constant): found.add(call.args[0].value)
            elif name in ('replace_folder', 'remove_folder'):   # their point: a positional or `point=` argument
                pos = 2 if name == 'replace_folder' else 1
                arg = call.args[pos] if len(call.args) > pos else next(
                    (k.value for k in call.keywords if k.arg == 'point'), ast.Constant('folder'))
                if isinstance(arg, ast.Constant):
                    found |= {f'{arg.value}.{s}' for s in ('old_moved', 'renamed', 'deleting')}
    assert found == set(KILL_POINTS), sorted(found ^ set(KILL_POINTS))

@pytest.mark.parametrize('fault', ['checkpoint.saved:2', 'checkpoint.written:2', 'checkpoint.renamed:2', 'checkpoint.deleting'])
def test_killed_while_saving_a_checkpoint(ref, tmp_path, fault):
    "Killed inside a save (files half written, written but not renamed, renamed, an old one half deleted): the next run resumes to the same end."
    out = tmp_path / 'run'
    killed = flowmatch(*toy(out), fault=fault, tmp=tmp_path).killed(fault.split(':')[0])
    again = flowmatch(*toy(out), '--resume', tmp=tmp_path).ok()
    assert f'was last held by process {killed.pid}' in again.stderr  # the dead run's lock is noticed, and taken over
    same_run(ref['toy'], out); no_hidden_leftovers(out)
    FIGURES['kill points'] += 1; FIGURES['kill runs'] += 1

def test_killed_while_replacing_a_checkpoint(ref, tmp_path):
    "Resumed from an older checkpoint, killed while the newer folder of the same step is being replaced: the old one moved aside, the new one not yet in place."
    out = tmp_path / 'run'; shutil.copytree(ref['toy'], out)
    older = out / 'train' / 'checkpoints' / 'step_00000015'
    flowmatch(*toy(out), '--resume', older, fault='checkpoint.old_moved', tmp=tmp_path).killed('checkpoint.old_moved')
    ck = sorted(p.name for p in (out / 'train' / 'checkpoints').iterdir())
    assert ck == ['.deleting_step_00000020', '.tmp_step_00000020', 'step_00000015'], ck
    flowmatch(*toy(out), '--resume', tmp=tmp_path).ok()
    same_run(ref['toy'], out); no_hidden_leftovers(out)
    FIGURES['kill points'] += 1; FIGURES['kill runs'] += 1

@pytest.mark.parametrize('fault', ['export.renamed', 'export.old_moved', 'export.deleting'])
def test_killed_while_exporting_the_model(ref, tmp_path, fault):
    "Killed while the trained model is put in place: just renamed (the first export), or over an earlier export with the old folder moved aside or half deleted: the next run leaves one complete model/, the uninterrupted run's, and no leftover."
    out = tmp_path / 'run'
    if fault == 'export.renamed': flowmatch(*toy(out), fault=fault, tmp=tmp_path).killed(fault)
    else:  # a finished run exported again (--resume after its last step)
        shutil.copytree(ref['toy'], out)
        flowmatch(*toy(out), '--resume', fault=fault, tmp=tmp_path).killed(fault)
        left = sorted(p.name for p in out.iterdir() if 'model' in p.name)
        assert left == (['.deleting_model', 'model.part'] if fault == 'export.old_moved' else ['.deleting_model', 'model']), left
    flowmatch(*toy(out), '--resume', tmp=tmp_path).ok()
    same_run(ref['toy'], out)
    assert sorted(p.name for p in out.iterdir() if 'model' in p.name) == ['model']
    FIGURES['kill points'] += 1; FIGURES['kill runs'] += 1

def test_killed_while_the_log_is_rewritten(ref, tmp_path):
    "A resume rewrites log.jsonl (trimmed to its checkpoint); killed in the middle, the log still holds every earlier record."
    out = tmp_path / 'run'
    flowmatch(*toy(out), fault='checkpoint.saved:3', tmp=tmp_path).killed('checkpoint.saved')  # at step 15: newest is 10
    before = (out / 'train' / 'log.jsonl').read_bytes()
    assert len(before.splitlines()) == 15
    flowmatch(*toy(out), '--resume', fault='log.rewrite', tmp=tmp_path).killed('log.rewrite')
    assert (out / 'train' / 'log.jsonl').read_bytes() == before  # nothing lost
    flowmatch(*toy(out), '--resume', tmp=tmp_path).ok()
    assert not list((out / 'train').glob('.log.jsonl.*'))
    same_run(ref['toy'], out)
    FIGURES['kill points'] += 1; FIGURES['kill runs'] += 2

@pytest.mark.parametrize('fault', ['prepare.image:15', 'prepare.done'])
def test_killed_while_preparing_celebahq(ref, tmp_path, fault):
    "Killed after 15 of 40 images, or with all 40 written but not marked complete: the next run completes the folder and trains on all 40 (it used to train on the 15, silently)."
    from flowmatch.data import PREPARED
    from flowmatch.train import latest_checkpoint
    out = tmp_path / 'faces'
    flowmatch(*faces(out, ref['zip']), fault=fault, tmp=tmp_path).killed(fault.split(':')[0])
    assert not (out / 'root' / PREPARED).exists()
    if fault == 'prepare.done':  # all images there, but not known to be all: without data.src it is refused
        line = flowmatch(*faces(out, None), tmp=tmp_path).error()
        assert line == ("flowmatch train: error: data.root=<tmp>/faces/root holds 40 images but no .prepared.json: its "
                        "preparation did not finish. Set data.src to the CelebA-HQ folder/zip/tar/parquet to complete it "
                        "(files already there are kept), or use data.name=image_folder to train on these images as they are")
        FIGURES['bad inputs'] += 1
    flowmatch(*faces(out, ref['zip']), tmp=tmp_path).ok()
    assert json.loads((out / 'root' / PREPARED).read_text())['kept'] > 0
    st = json.loads((latest_checkpoint(out / 'train') / 'trainer_state.json').read_text())
    assert st['dataset']['length'] == 40
    same_run(ref['faces'], out)
    FIGURES['kill points'] += 1; FIGURES['kill runs'] += 1

@pytest.mark.parametrize('fault', ['encode.shard:2', 'encode.shard_meta:3', 'encode.manifest'])
def test_killed_while_encoding(ref, tmp_path, fault):
    "Killed after two shards, between a shard's metadata and its latents, before the final manifest: `flowmatch encode` again gives the same cache, file for file."
    out = tmp_path / 'enc'
    flowmatch(*encode(out), fault=fault, tmp=tmp_path).killed(fault.split(':')[0])
    again = flowmatch(*encode(out), tmp=tmp_path).ok()
    repairs = [l for l in again.lines('warning') if 'was last held by' not in l]  # the killed run's lock is taken over
    assert not repairs, again.stderr  # an interrupted cache is resumed, not repaired
    same_cache(ref['cache'], out / 'latents')
    FIGURES['kill points'] += 1; FIGURES['kill runs'] += 1


# ----------------------------------------------------------------------------------------------------- two at once
def test_a_run_folder_has_one_writer(ref, tmp_path):
    "Two `flowmatch train` on one output_dir, seeds 0 and 1: the first is frozen mid-run (SIGSTOP at a kill point, holding the folder), the second is refused before it writes anything, the first then ends as if alone."
    out = tmp_path / 'run'
    first = Run(toy(out), fault='checkpoint.renamed:2:stop', tmp=tmp_path, wait=False)
    deadline = time.time() + 60
    while Path(f'/proc/{first.pid}/stat').read_text().split(')')[1].split()[0] != 'T':
        assert time.time() < deadline and first.proc.is_alive(), 'the first run did not stop at its kill point'
        time.sleep(0.02)
    log_before = (out / 'train' / 'log.jsonl').read_bytes()
    line = flowmatch(*toy(out), 'seed=1', tmp=tmp_path).error()
    assert line.startswith(f'flowmatch train: error: <tmp>/run is in use by process {first.pid} on '), line
    assert line.endswith(': wait until it ends (or stop it), or use another folder'), line
    assert (out / 'train' / 'log.jsonl').read_bytes() == log_before
    line = flowmatch(*encode(out), tmp=tmp_path).error()  # two `flowmatch encode` at once: the same answer
    assert line.startswith(f'flowmatch encode: error: <tmp>/run is in use by process {first.pid} on '), line
    os.kill(first.pid, signal.SIGCONT)
    first.wait().ok()
    same_run(ref['toy'], out)
    FIGURES['bad inputs'] += 2


# ------------------------------------------------------------------------------------------------------ damaged files
def _damage(f, how):
    data = f.read_bytes()
    if how == 'half': f.write_bytes(data[:len(data) // 2])
    elif how == 'empty': f.write_bytes(b'')
    elif how == 'deleted': f.unlink()
    elif how == 'flipped':  # one byte changed, the size kept: in JSON a digit (still valid JSON), elsewhere one bit
        b, i = bytearray(data), len(data) // 2
        if f.suffix == '.json':
            i = next(j for j in range(i, len(b)) if chr(b[j]).isdigit()); b[i] = ord('7' if b[i] != ord('7') else '3')
        else: b[i] ^= 0x01
        f.write_bytes(bytes(b))

CHECKPOINT_FILES = ('model.safetensors', 'optimizer.bin', 'scheduler.bin', 'random_states_0.pkl', 'rng_0.safetensors',
                    'ema.safetensors', 'trainer_state.json')

@pytest.mark.parametrize('how', ['half', 'empty', 'deleted', 'flipped'])
@pytest.mark.parametrize('name', CHECKPOINT_FILES)
def test_damaged_newest_checkpoint(ref, tmp_path, name, how):
    "Every file of the newest checkpoint cut in half, emptied, deleted (what an interrupted delete left before) or with one byte changed: --resume names the file, resumes from the previous checkpoint, and ends where the uninterrupted run ends."
    out = tmp_path / 'run'; shutil.copytree(ref['toy'], out)
    f = out / 'train' / 'checkpoints' / 'step_00000020' / name
    size = f.stat().st_size
    _damage(f, how)
    r = flowmatch(*toy(out), '--resume', tmp=tmp_path).ok()
    why = {'half': f'{name} has {size // 2:,} bytes, {size:,} were written', 'empty': f'{name} has 0 bytes, {size:,} were written',
           'deleted': f'{name} is missing', 'flipped': f'{name} does not match its SHA-256 (changed on disk)'}[how]
    if name == 'trainer_state.json':
        why = {'deleted': 'trainer_state.json is missing (the save did not finish)'}.get(how, why)
        if how in ('half', 'empty'): why = 'trainer_state.json is damaged (not valid JSON)'
    assert r.lines('warning') == [f'flowmatch train: warning: checkpoint step_00000020 is damaged ({why}): resuming from '
                                  'step_00000015, the newest intact one'], r.stderr
    same_run(ref['toy'], out)
    FIGURES['corruptions'] += 1

def test_damaged_checkpoint_named_explicitly_and_none_intact(ref, tmp_path):
    "A damaged checkpoint given by path is refused with the intact ones; with every checkpoint damaged, --resume refuses and says what to do."
    out = tmp_path / 'run'; shutil.copytree(ref['toy'], out)
    ck = out / 'train' / 'checkpoints'
    size = (ck / 'step_00000020' / 'optimizer.bin').stat().st_size
    _damage(ck / 'step_00000020' / 'optimizer.bin', 'half')
    line = flowmatch(*toy(out), '--resume', ck / 'step_00000020', tmp=tmp_path).error()
    assert line == (f'flowmatch train: error: checkpoint <tmp>/run/train/checkpoints/step_00000020 is damaged: optimizer.bin has '
                    f'{size // 2:,} bytes, {size:,} were written. Intact checkpoints: step_00000015; resume from one of '
                    'them, or with resume=True (--resume) for the newest'), line
    _damage(ck / 'step_00000015' / 'ema.safetensors', 'deleted')
    line = flowmatch(*toy(out), '--resume', tmp=tmp_path).error()
    assert line == (f'flowmatch train: error: no intact checkpoint in <tmp>/run/train/checkpoints: step_00000020 (optimizer.bin '
                    f'has {size // 2:,} bytes, {size:,} were written); step_00000015 (ema.safetensors is missing). Restore the '
                    'files, or delete <tmp>/run/train/checkpoints to train from the start'), line
    FIGURES['corruptions'] += 2; FIGURES['bad inputs'] += 2

@pytest.mark.parametrize('name,how', [('shard_00001.json', 'half'), ('shard_00001.json', 'empty'), ('shard_00003.npy', 'half'),
                                      ('shard_00003.npy', 'empty'), ('shard_00002.npy', 'values'), ('manifest.json', 'half'),
                                      ('manifest.json', 'empty'), ('shard_00004.json', 'deleted')])
def test_damaged_latent_cache(ref, tmp_path, name, how):
    "A cut, emptied or deleted shard file or manifest, or a shard's values overwritten in place (same size and header): `flowmatch encode` names it and repairs it, to the same cache."
    import numpy as np
    out = tmp_path / 'enc'; shutil.copytree(ref['cache'], out / 'latents')
    f = out / 'latents' / name
    if how == 'values':
        z = np.load(f); z[:, 0] = 3.0e4; np.save(f, z)  # huge values: training on them gave a loss of 6.7e8
    else: _damage(f, how)
    r = flowmatch(*encode(out), tmp=tmp_path).ok()
    cache = '<tmp>/enc/latents'
    expect = {'half': f'{name} is damaged (not valid JSON)', 'empty': f'{name} is damaged (not valid JSON)',
              'values': f'{name} does not match the sums stored in shard_00002.json (its values changed on disk)'}.get(how)
    if name.endswith('.npy') and how in ('half', 'empty'):
        expect = re.escape(f'{name} cannot be read (') + r'.+\)'
    if name == 'manifest.json':
        pattern = re.escape(f'flowmatch encode: warning: {cache}/manifest.json is damaged: not valid JSON (') + r'.+' + \
                  re.escape('); rewriting it from the plan (every shard is checked against it)')
    elif how == 'deleted': pattern = None  # a missing shard is simply encoded (as after a kill)
    else: pattern = re.escape(f'flowmatch encode: warning: the latent cache at {cache}: ') + \
                    (expect if expect.endswith(r'\)') else re.escape(expect)) + re.escape('; encoding it again')
    warned = r.lines('warning')
    if pattern is None: assert warned == [], warned
    else: assert len(warned) == 1 and re.fullmatch(pattern, warned[0]), warned
    same_cache(ref['cache'], out / 'latents')
    FIGURES['corruptions'] += 1

def test_training_on_an_altered_cache_repairs_it_first(ref, tmp_path):
    "`flowmatch train` on a cache whose shard was overwritten in place: the cache is verified when opened for training, the shard encoded again, and training sees the true latents."
    import numpy as np
    out = tmp_path / 'run'; shutil.copytree(ref['cache'], out / 'latents')
    f = out / 'latents' / 'shard_00002.npy'; z = np.load(f); z[:, 0] = 3.0e4; np.save(f, z)
    r = flowmatch('train', 'digits', f'output_dir={out}', 'vae.train.steps=0', 'latents.shard_size=256', 'progress=false',
                  'train.max_steps=3', 'train.log_with=none', 'eval.kind=none', tmp=tmp_path).ok()
    assert any('shard_00002.npy does not match the sums stored in shard_00002.json' in l for l in r.lines('warning'))
    same_cache(ref['cache'], out / 'latents')
    assert all(rec['loss'] < 10 for rec in _log(out)), _log(out)
    FIGURES['corruptions'] += 1

def disk_log(monkeypatch):
    "Record every fsync (the path it flushed) and every os.replace (src, dst, fsyncs before it); both still happen."
    synced, renames, real_fsync, real_replace = [], [], os.fsync, os.replace
    monkeypatch.setattr(os, 'fsync', lambda fd: (synced.append(os.readlink(f'/proc/self/fd/{fd}')), real_fsync(fd))[1])
    monkeypatch.setattr(os, 'replace', lambda a, b: (renames.append((str(a), str(b), len(synced))), real_replace(a, b))[1])
    return synced, renames

def test_checkpoint_files_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    "Power-cut safety (not testable by a kill): every file of a checkpoint, and its folder, is fsynced before the folder is renamed into place, and the parent folder after."
    import torch
    from flowmatch.train import Trainer
    from flowmatch.toy import MLPVelocity
    from flowmatch.data import ToyPoints
    synced, renames = disk_log(monkeypatch)
    torch.manual_seed(0)
    tr = Trainer(MLPVelocity(hidden=16, depth=1), ToyPoints('moons', 64), output_dir=tmp_path / 'ck', max_steps=1,
                 batch_size=16, progress=False, log_with='none', checkpoint_every=1)
    tr.fit()
    tmp_folder = str(tmp_path / 'ck' / 'checkpoints' / '.tmp_step_00000001')
    rename = [r for r in renames if r[0] == tmp_folder]
    assert rename, renames
    before = {re.sub(r'/\.(trainer_state\.json)\.\d+\.tmp$', r'/\1', p) for p in synced[:rename[0][2]]}  # written whole, renamed
    files = {f'{tmp_folder}/{p.name}' for p in (tmp_path / 'ck' / 'checkpoints' / 'step_00000001').iterdir()}
    assert files | {tmp_folder} <= before, sorted((files | {tmp_folder}) - before)
    assert str(tmp_path / 'ck' / 'checkpoints') in synced[rename[0][2]:]
    tr.close()


def test_exported_model_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    "Power-cut safety of the recipe's export: every file of the model folder, and the folder, is fsynced before `model.part` is renamed to `model`, and the run folder after."
    from flowmatch.config import load_config
    from flowmatch import recipe
    synced, renames = disk_log(monkeypatch)
    run = Path(os.path.realpath(tmp_path)) / 'run'
    cfg = load_config('toy', [f'output_dir={run}', *toy(run)[3:]])
    recipe.train(cfg)
    part = str(run / 'model.part')
    rename = [r for r in renames if r[0] == part]
    assert rename and rename[0][1] == str(run / 'model'), renames
    files = {f'{part}/{p.name}' for p in (run / 'model').iterdir()}
    assert files and files | {part} <= set(synced[:rename[0][2]]), sorted((files | {part}) - set(synced[:rename[0][2]]))
    assert str(run) in synced[rename[0][2]:]

# ---------------------------------------------------------------------------------------------------------- resuming
def test_resume_applies_new_optimisation_settings(ref, tmp_path):
    "`--resume train.max_steps=40 train.lr=...`: applied (the schedule recomputed from the restored step), printed and kept in run.json; it used to keep the old peak rate."
    from flowmatch.train import lr_multiplier
    out = tmp_path / 'run'; shutil.copytree(ref['toy'], out)
    r = flowmatch(*toy(out), 'train.max_steps=40', 'train.lr=5e-3', '--resume', tmp=tmp_path).ok()
    assert 'steps 20 -> 40; resumed from <tmp>/run/train/checkpoints/step_00000020; changed on resume: max_steps 20 -> 40, ' \
           'lr 0.002 -> 0.005' in r.stdout, r.stdout
    run = json.loads((out / 'train' / 'run.json').read_text())
    assert run['changed_on_resume'] == {'lr': [0.002, 0.005], 'max_steps': [20, 40]}
    lrs = [rec['lr'] for rec in _log(out)[20:]]
    assert lrs == [5e-3 * lr_multiplier(s, 100, 40, 'cosine') for s in range(20, 40)], lrs

def _fingerprint(name):
    import torch
    from flowmatch.data import ToyPoints
    from flowmatch.latents import source_fingerprint
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return source_fingerprint(ToyPoints(name, 256, seed=0))['fingerprint'][:12]

def test_resume_refuses_other_data_or_model(ref, tmp_path):
    "Other data of the same length, or another model size: refused with what differs, not resumed (data) nor crashed in load_state_dict (model)."
    out = tmp_path / 'run'; shutil.copytree(ref['toy'], out)
    line = flowmatch(*toy(out), 'data.toy=checkerboard', '--resume', tmp=tmp_path).error()
    assert line == ('flowmatch train: error: Cannot resume <tmp>/run/train/checkpoints/step_00000020: these settings differ '
                    f'(saved -> now): dataset 256 items (fingerprint {_fingerprint("moons")}) -> 256 items (fingerprint '
                    f'{_fingerprint("checkerboard")}). They fix the data order, the random streams or the model: use the saved '
                    'values, or start a new run in another output_dir'), line
    line = flowmatch(*toy(out), 'model.hidden=48', '--resume', tmp=tmp_path).error()
    assert line == ('flowmatch train: error: Cannot resume <tmp>/run/train/checkpoints/step_00000020: these settings differ '
                    '(saved -> now): model body.0.bias (32,) -> (48,), body.0.weight (32, 34) -> (48, 34), rest.0.bias (32,) -> '
                    '(48,) and 2 more. They fix the data order, the random streams or the model: use the saved values, or start '
                    'a new run in another output_dir'), line
    FIGURES['bad inputs'] += 2

def test_no_checkpoint_of_non_finite_weights(tmp_path):
    "A step that turns the weights infinite with a finite loss: the checkpoint of that step is not written (it used to be, and the NaN stop then recommended it)."
    out = tmp_path / 'run'
    line = flowmatch(*toy(out, 'train.lr=3e38', 'train.betas=[0,0.999]', 'train.weight_decay=1', 'train.checkpoint_every=1',
                          'train.warmup_steps=0'), tmp=tmp_path).error()
    assert line == ("flowmatch train: error: step 1: the model weights hold NaN or inf (first: 'body.0.weight'), so no "
                    "checkpoint was written. No checkpoint was written before: start again with a lower lr"), line
    assert list((out / 'train' / 'checkpoints').iterdir()) == []
    FIGURES['bad inputs'] += 1


# ------------------------------------------------------------------------------------------------------ bad inputs
def _bad_inputs(tmp):
    "(arguments, exact expected line) for each bad input of the issue's table; files made in `tmp`."
    import tarfile
    (tmp / 'empty.yaml').write_text('')
    (tmp / 'latin1.yaml').write_bytes('# réglages\nseed: 1\n'.encode('latin-1'))
    (tmp / 'not_a.zip').write_bytes(b'PK\x03\x04 but nothing after')
    whole = face_zip(tmp / 'whole.zip', n=6)
    with zipfile.ZipFile(whole) as z, tarfile.open(tmp / 'faces.tar', 'w') as tf:
        for i in z.infolist():
            info = tarfile.TarInfo(i.filename); info.size = i.file_size; tf.addfile(info, io.BytesIO(z.read(i)))
    with tarfile.open(tmp / 'faces.tar') as tf: second = tf.getmembers()[1]
    data = (tmp / 'faces.tar').read_bytes()
    (tmp / 'cut.tar').write_bytes(data[:second.offset]); (tmp / 'cut_mid.tar').write_bytes(data[:second.offset_data + 100])
    (tmp / 'samples').mkdir(); shutil.copy(ROOT / 'nbs' / 'images' / 'coupling.png', tmp / 'samples' / '000000.png')
    (tmp / 'samples' / '000001.png').write_bytes(b'\x89PNG\r\n\x1a\n and then garbage')
    sample = ['sample', 'toy', f'output_dir={tmp}/none', '--n', '4', '--out', f'{tmp}/s']
    prep = lambda src, name: faces(tmp / name, tmp / src)
    E = 'flowmatch {}: error: '
    return [
        (['train', tmp / 'empty.yaml'], E.format('train') + "<tmp>/empty.yaml is empty: write the run's sections in it (see "
         f"{ROOT}/configs/digits.yaml), or pass the name of a shipped config"),
        (['train', tmp / 'latin1.yaml'], E.format('train') + '<tmp>/latin1.yaml is not UTF-8 text (byte 0xe9 at position 3): '
         'save it as UTF-8'),
        (['train', 'toy', 'seed=99999999999999999999'], E.format('train') + 'seed=99999999999999999999 is out of range: a '
         'whole number from 0 to 2**32 - 1'),
        (['train', 'toy', 'train.lr=.inf'], E.format('train') + 'train.lr=inf is out of range: a finite number > 0'),
        (['train', 'toy', 'train.lr=.nan'], E.format('train') + 'train.lr=nan is out of range: a finite number > 0'),
        (['train', 'digits', 'model=null'], E.format('train') + 'model needs patch_size, hidden_size, depth, num_heads (no '
         'preset gives them): add them, or set model.preset'),
        (prep('not_a.zip', 'p1'), E.format('train') + "<tmp>/not_a.zip is not a readable zip archive (BadZipFile: File is not "
         "a zip file): it is truncated, damaged or not that kind of file; download or copy it again"),
        (prep('cut.tar', 'p2'), E.format('train') + '<tmp>/cut.tar is truncated: it stops after 1 entries without the '
         'end-of-archive blocks; download or copy it again'),
        (prep('cut_mid.tar', 'p3'), E.format('train') + '<tmp>/cut_mid.tar is not a readable tar archive (ReadError: '
         'unexpected end of data): it is truncated, damaged or not that kind of file; download or copy it again'),
        (['fid', '--samples', tmp / 'samples'], E.format('fid') + '<tmp>/samples/000001.png is not a readable image '
         '(UnidentifiedImageError): remove it from <tmp>/samples, or replace it'),
        ([*sample, '--guidance', 'nan'], E.format('sample') + '--guidance nan: sample.guidance=nan is out of range: a finite '
         'number >= 0'),
        ([*sample, '--guidance', 'inf'], E.format('sample') + '--guidance inf: sample.guidance=inf is out of range: a finite '
         'number >= 0'),
        ([*sample, '--guidance', '-5'], E.format('sample') + '--guidance -5.0: sample.guidance=-5.0 is out of range: a finite '
         'number >= 0'),
        ([*sample, '--steps', '0'], E.format('sample') + '--steps 0: sample.steps=0 is out of range: >= 1'),
        ([*sample, '--batch-size', '0'], E.format('sample') + '--batch-size 0: sample.batch_size=0 is out of range: >= 1'),
        ([*sample, '--batch-size', '-2'], E.format('sample') + '--batch-size -2: sample.batch_size=-2 is out of range: >= 1'),
        (['train', 'toy', f'output_dir={tmp}/r', '--resume', tmp / 'nowhere'], E.format('train') + '--resume <tmp>/nowhere: no '
         'such checkpoint folder (checkpoints are in <tmp>/r/train/checkpoints)'),
    ]

def test_bad_inputs_table(tmp_path):
    "Each bad input of the issue's table ends in its exact one-line message (exit code 2, no traceback, no file written)."
    cases = _bad_inputs(tmp_path)
    for argv, expect in cases:
        line = flowmatch(*argv, tmp=tmp_path).error()
        assert line == expect, f'\n{argv}\n got: {line}\nwant: {expect}'
        FIGURES['bad inputs'] += 1

def test_archive_with_absolute_and_relative_entries(ref, tmp_path):
    "A zip mixing absolute and relative entries (it raised 'Can't mix absolute and relative paths'): the relative ones are prepared, the others skipped with a warning, nothing is written outside data.root."
    zip_ = face_zip(tmp_path / 'mixed.zip', extra=['/abs/evil.png', 'faces/../../evil.png'])
    out = tmp_path / 'faces'
    r = flowmatch(*faces(out, zip_), tmp=tmp_path).ok()
    assert r.lines('warning') == ["flowmatch train: warning: <tmp>/mixed.zip: skipped 2 entries with an absolute path or '..' "
                                  "(never written outside the output folder): /abs/evil.png, faces/../../evil.png"], r.stderr
    assert not list(tmp_path.rglob('evil.png')) and not Path('/abs/evil.png').exists()
    same_run(ref['faces'], out)
    FIGURES['bad inputs'] += 1


# ------------------------------------------------------------------------------------------------------- rendezvous
def test_flowmatch_num_processes_listens_on_loopback_only(tmp_path):
    "`flowmatch --num-processes 2 train ...`: every socket its processes listen on (the rendezvous store, gloo) is on 127.0.0.1."
    import psutil
    cmd = [str(Path(sys.executable).parent / 'flowmatch'), '--num-processes', '2', *toy(tmp_path / 'run')]
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    while p.poll() is None:
        try: tree = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
        except psutil.NoSuchProcess: break
        for q in tree:
            try:
                conns = q.net_connections('tcp') if hasattr(q, 'net_connections') else q.connections('tcp')
                seen |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
            except psutil.Error: pass
        time.sleep(0.05)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    assert 'finished 20 steps on 2 process(es)' in out, out
    assert seen == {'127.0.0.1'}, seen
