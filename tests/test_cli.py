"The installed `flowmatch` command in fresh processes: help, one-line errors, and training on two CPU processes that really work together."
import json, os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
from flowmatch.launch import free_port

ROOT = Path(__file__).resolve().parent.parent
TOY = str(ROOT / 'configs' / 'toy.yaml')
BIN = Path(sys.executable).parent


def _exe(name):
    "An executable installed next to this Python (the venv's `flowmatch`, `accelerate`, `torchrun`)."
    p = BIN / name
    if not p.exists(): p = shutil.which(name)
    if p is None: pytest.skip(f'{name} is not installed: `pip install -e .` puts the flowmatch script on the PATH')
    return str(p)


def _env(**kw):
    return {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'PYTHONHASHSEED': '0', **kw}


def _run(cmd, timeout=55):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    r.seconds = time.perf_counter() - t0
    return r


def _toy_train(out, steps=20):
    return ['train', TOY, f'train.max_steps={steps}', f'output_dir={out}', 'train.progress=false', 'train.batch_size=64',
            'train.log_every=10']


@pytest.mark.timeout(60)
def test_help_lists_the_commands():
    r = _run([_exe('flowmatch'), '--help'])
    assert r.returncode == 0, r.stderr
    for c in ('train', 'sample', 'encode', 'fid', 'demo', 'run', 'accelerate launch', 'torchrun'): assert c in r.stdout, c
    r = _run([_exe('flowmatch'), 'train', '--help'])
    assert r.returncode == 0 and '--resume' in r.stdout and 'key=value' in r.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize('args,expect', [
    (['train', TOY, 'train.lrr=1e-3'], "unknown key 'train.lrr' (did you mean 'lr'?)"),
    (['train', 'configs/no_such.yaml'], 'no config file'),
    (['sample', TOY, '--n', '4', '--out', 'x', 'output_dir=/nonexistent/run'], 'no trained model'),
])
def test_user_errors_are_one_line(args, expect):
    r = _run([_exe('flowmatch'), *args])
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr
    assert lines[0].startswith(f'flowmatch {args[0]}: error:') and expect in lines[0], lines[0]


def _check_two_process_run(r, out):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert 'world size 2' in log, log[-3000:]
    assert '2 process(es) (MULTI_CPU)' in log, log[-3000:]  # the Trainer's own line: gloo, not two lone processes
    assert 'finished 20 steps on 2 process(es)' in log, log[-3000:]
    run = json.loads((out / 'train' / 'run.json').read_text())
    assert run['world_size'] == 2 and run['distributed_type'] == 'MULTI_CPU'
    steps = [json.loads(l)['step'] for l in (out / 'train' / 'log.jsonl').read_text().splitlines()]
    assert steps == list(range(1, 21))  # one record per optimizer step, not one per process


@pytest.mark.timeout(60)
def test_accelerate_launch_cpu_two_processes(tmp_path):
    "`accelerate launch --cpu` starts a single process; flowmatch notices and trains on the 2 processes that were asked for."
    out = tmp_path / 'run'
    r = _run([_exe('accelerate'), 'launch', '--num_processes', '2', '--cpu', '--num_machines', '1', '--mixed_precision', 'no',
              '--dynamo_backend', 'no', '--main_process_port', str(free_port()), '-m', 'flowmatch.cli', *_toy_train(out)])
    print(f'accelerate launch, 2 CPU processes: {r.seconds:.1f} s')
    _check_two_process_run(r, out)


@pytest.mark.timeout(60)
def test_torchrun_two_processes(tmp_path):
    out = tmp_path / 'run'
    r = _run([_exe('torchrun'), '--nproc_per_node', '2', '--master_port', str(free_port()), '-m', 'flowmatch.cli', *_toy_train(out)])
    print(f'torchrun, 2 CPU processes: {r.seconds:.1f} s')
    _check_two_process_run(r, out)


@pytest.mark.timeout(60)
def test_sample_files_do_not_depend_on_the_number_of_processes(tmp_path):
    "`flowmatch sample` on 1 process and under torchrun on 2 writes the same samples.safetensors, byte for byte."
    out = tmp_path / 'run'
    r = _run([_exe('flowmatch'), *_toy_train(out, steps=5)])
    assert r.returncode == 0, r.stderr[-3000:]
    args = ['sample', TOY, f'output_dir={out}', '--num-samples', '50', '--steps', '4', '--batch-size', '16', '--seed', '3']
    r1 = _run([_exe('flowmatch'), *args, '--out', str(tmp_path / 's1')])
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = _run([_exe('torchrun'), '--nproc_per_node', '2', '--master_port', str(free_port()), '-m', 'flowmatch.cli', *args,
               '--out', str(tmp_path / 's2')])
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert 'world size 2' in r2.stdout
    f1, f2 = (tmp_path / s / 'samples.safetensors' for s in ('s1', 's2'))
    assert f1.read_bytes() == f2.read_bytes()
    assert sorted(p.name for p in (tmp_path / 's2').iterdir()) == ['samples.safetensors']  # the per-process shards are gone


@pytest.mark.timeout(400)
def test_distill_killed_resumes_to_the_same_student(tmp_path):
    "`flowmatch distill` killed (SIGKILL) while it trains resumes from its checkpoint and ends with the student of an uninterrupted run; `sample --fewstep` then uses that student."
    from safetensors.torch import load_file
    out, ref = tmp_path / 'run', tmp_path / 'ref'
    r = _run([_exe('flowmatch'), *_toy_train(out, steps=10)])
    assert r.returncode == 0, r.stderr[-3000:]
    shutil.copytree(out, ref)
    args = ['--method', 'reflow', '--steps', '1500', '--batch-size', '16', '--n-pairs', '256', '--n', '50', 'progress=false']
    r = _run([_exe('flowmatch'), 'distill', TOY, f'output_dir={ref}', *args], timeout=150)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'reflow student in' in r.stdout and 'fewstep' in json.loads((ref / 'metrics.json').read_text())
    ck = out / 'fewstep' / 'reflow' / 'checkpoint.pt'
    p = subprocess.Popen([_exe('flowmatch'), 'distill', TOY, f'output_dir={out}', *args], cwd=ROOT, env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not ck.exists() and p.poll() is None and time.monotonic() - t0 < 100: time.sleep(0.01)
    p.kill(); p.wait()
    assert ck.exists() and not (out / 'fewstep' / 'reflow' / 'model').exists(), 'not killed while training'
    r = _run([_exe('flowmatch'), 'distill', TOY, f'output_dir={out}', *args], timeout=150)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'resuming from {ck}' in r.stdout and 'was last held by process' in r.stderr, r.stdout + r.stderr
    weights = lambda d: load_file(d / 'fewstep' / 'reflow' / 'model' / 'model.safetensors')
    a, b = weights(ref), weights(out)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bit for bit
    assert not ck.exists()  # removed once the student is saved
    r = _run([_exe('flowmatch'), 'sample', TOY, f'output_dir={out}', '--n', '20', '--out', str(tmp_path / 's'),
              '--fewstep', 'reflow', '--steps', '2'])
    assert r.returncode == 0 and '(few-step reflow, 2 NFE)' in r.stdout, r.stderr[-3000:]
