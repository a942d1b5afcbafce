"The benchmark smoke run (`python -m benchmarks.run --device cpu --quick`): every section measured, numbers positive, ratios exact."
import ast, json, math, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import get  # noqa: E402


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    cmd = [sys.executable, '-m', 'benchmarks.run', '--device', 'cpu', '--quick', '--threads', '1', '--out', str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert out.exists(), f'no report written:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}'
    return dict(report=json.loads(out.read_text()), stdout=r.stdout, stderr=r.stderr, returncode=r.returncode)


def positive(x): return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def check_section(run, name):
    "The section's dict, after checking that it ran (an error shows its traceback)."
    s = run['report'].get(name)
    assert s is not None, f'section {name} missing'
    assert 'error' not in s, f"section {name} failed:\n{s.get('traceback', s['error'])}"
    assert 'skipped' not in s, (name, s['skipped'])
    return s


def test_every_section_ran(run):
    for name in ('dit_train', 'memory', 'vae', 'sampling', 'latents', 'overhead'): check_section(run, name)
    assert run['returncode'] == 0, run['stderr'][-4000:]
    rep = run['report']
    assert rep['meta']['device'] == 'cpu' and rep['meta']['quick'] is True
    assert positive(rep['peak']['flops'])
    # the smoke run stays a smoke run (~20 s here on one thread of a shared 2-core machine)
    assert rep['meta']['elapsed_s'] < 60, f"--quick took {rep['meta']['elapsed_s']:.0f} s of measuring"


def test_training_numbers(run):
    d = check_section(run, 'dit_train')
    assert set(d['variants']) >= {'reference_fp32', 'flowmatch_fp32', 'flowmatch_bf16'}
    for name, v in d['variants'].items():
        for k in ('img_s', 'step_ms', 'mfu', 'iters'): assert positive(v[k]), (name, k, v)
        assert v['img_s'] == pytest.approx(d['batch'] / v['step_ms'] * 1e3)
    assert d['params']['flowmatch'] == d['params']['reference']            # the reference is the same architecture
    assert d['flops_per_img']['train'] == 3 * d['flops_per_img']['forward_formula']
    # flowmatch.dit's FLOP formula agrees with torch's FLOP counter run on the reference model
    assert d['flops_per_img']['forward_formula'] == pytest.approx(d['flops_per_img']['forward_counted_reference'], rel=0.01)


def test_memory_estimate(run):
    m = check_section(run, 'memory')
    from flowmatch.dit import DiT, DIT_PRESETS
    n = sum(p.numel() for p in DiT(**DIT_PRESETS['celebahq']).parameters())
    assert m['batch'] == 256 and m['config']['hidden_size'] == 512
    e = m['estimates']['flowmatch_bf16']
    assert e['parameter'] == pytest.approx(4 * n / 2**30, rel=1e-6)          # fp32 weights, counted exactly
    assert e['optstate'] == pytest.approx(2 * e['parameter'], rel=1e-3)     # AdamW's two moments (+ tiny step counters)
    assert e['activation'] > 10 * e['parameter']                           # batch 256: activations dominate
    assert e['total'] == pytest.approx(sum(v for k, v in e.items() if k in ('parameter', 'buffer', 'gradient', 'activation',
                                                                            'temp', 'optstate', 'other')), rel=1e-6)
    assert e['fits_target'] == (e['total'] <= 24e9 / 2**30)


def test_sampling_and_vae(run):
    s, v = check_section(run, 'sampling'), check_section(run, 'vae')
    assert s['nfe_per_call'] == s['steps']                                  # counted model calls: one per Euler step
    assert positive(s['img_nfe_s'])
    assert s['fid50k_dit_s'] == pytest.approx(50_000 * 50 / s['img_nfe_s'])
    assert s['fid50k_total_s'] == pytest.approx(s['fid50k_dit_s'] + 50_000 / v['decode']['img_s'])
    assert v['latent_shape'] == s['latent_shape']                           # the VAE decodes what the sampler makes
    for k in ('encode', 'decode'): assert positive(v[k]['img_s']) and positive(v['flops_per_img'][k])


def test_latent_cache(run):
    l = check_section(run, 'latents')
    assert l['latent_shape'] == run['report']['sampling']['latent_shape']  # the cache holds the DiT's latents
    for k in ('build', 'load', 'load_items'): assert positive(l[k]['img_s']), k
    assert positive(l['train_img_s']) and l['train_source'] in run['report']['dit_train']['variants']


def test_framework_overhead(run):
    o = check_section(run, 'overhead')
    for part in ('toy', 'digits_dit'):
        for side in ('trainer', 'plain'): assert positive(o[part][side]['img_s']), (part, side)
        assert o[part]['trainer']['iters'] == o[part]['plain']['iters'] == o[part]['steps']   # same number of timed steps


def test_ratios_are_the_quotients_they_name(run):
    rep, ratios = run['report'], run['report']['ratios']
    expected = ['dit_train: flowmatch_fp32 / reference_fp32 (img/s)', 'dit_train: flowmatch_bf16 / reference_fp32 (img/s)',
                'dit_train: FLOP formula / counted FLOPs', 'latents: cache load / training consumption (img/s)',
                'overhead: toy Trainer step / plain loop (img/s)', 'overhead: digits_dit Trainer step / plain loop (img/s)']
    for name in expected: assert name in ratios, f'{name} missing; have {list(ratios)}'
    for name, r in ratios.items():
        a, b = get(rep, r['numerator']), get(rep, r['denominator'])
        assert positive(a) and positive(b), (name, r)
        assert r['value'] == pytest.approx(a / b, rel=1e-12), name
        # the printed table shows the same number
        assert re.search(re.escape(name) + r'\s+' + re.escape(f"{r['value']:.3f}x"), run['stdout']), f'{name} not printed as in the JSON'


def test_benchmarks_are_not_installed_with_flowmatch():
    import setuptools
    setup = (ROOT / 'setup.py').read_text()
    include = re.search(r"find_packages\(include=(\[.*?\])\)", setup)
    assert include, 'setup.py should list the packages it installs with find_packages(include=[...])'
    pkgs = setuptools.find_packages(where=str(ROOT), include=ast.literal_eval(include.group(1)))
    assert 'flowmatch' in pkgs and not any(p.startswith('benchmarks') for p in pkgs), pkgs


def test_gpu_plan_runs_on_a_cpu(monkeypatch):
    """The branches only `--device cuda` takes (more variants, whole-step compile, compiled sampling, channels-last VAE, the
    Trainer-vs-bare-step section) run here at the smoke run's sizes, so that a GPU run does not meet them for the first time.
    torch.compile uses the light `aot_eager` backend here: this checks the plumbing, not inductor."""
    import torch
    from benchmarks import sections as S
    from benchmarks.report import section_ratios, format_section
    from benchmarks.timing import Deadline
    compile_ = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda fn=None, mode=None, **kw: compile_(fn, **dict(kw, backend='aot_eager')))

    class GpuLike(S.Context):   # the cuda plan and statistics, on this CPU
        cuda = property(lambda self: True)
        stat = property(lambda self: 'median')
    cfg = dict(S.settings('cpu', True), compile_reserve_s=1, later_reserve_s=0, sample_batch_compiled=32, trainer_warm=2,
               trainer_steps=3, trainer_window=1, step_budget_s=0.1, sample_budget_s=0.1, vae_budget_s=0.1)
    ctx = GpuLike('cpu', True, 1e11, Deadline(1e9), cfg)
    rep = {}
    for name, fn in S.SECTIONS.items():   # in the run's order, as benchmarks.run calls them
        rep[name] = fn(ctx, rep)
        rep[name]['section_s'] = 0.0
        section_ratios(rep, name)
        assert 'ERROR' not in format_section(rep, name), format_section(rep, name)
    d = rep['dit_train']
    names = [v.name for v in S._plan(ctx)]
    assert list(d['variants']) == names and len(names) == 10
    for v in d['variants'].values(): assert positive(v['img_s']), v
    assert d['variants']['flowmatch_bf16_fused_compile_b32']['batch'] == 32
    # every flowmatch variant started from the same weights, batch, noise and times: the first losses agree with fp32
    agree = d['loss_agreement']
    for k in names[2:]:
        if k.startswith('flowmatch_bf16') and not k.endswith('_b32'):
            assert agree[k]['steps'] >= 3 and agree[k]['max_rel_diff'] < 0.02, (k, agree[k])
    assert 'flowmatch_bf16_fused_compile_b32' not in agree                     # another batch: another loss curve
    assert agree['flowmatch_bf16']['losses'][0] == pytest.approx(agree['flowmatch_fp32'][0], rel=1e-3)
    s = rep['sampling']
    assert set(s['variants']) == {'eager', 'compile_b32'} and s['variants']['compile_b32']['nfe_per_call'] == s['steps']
    assert s['img_nfe_s'] == max(v['img_nfe_s'] for v in s['variants'].values())
    for k in ('encode_channels_last', 'decode_channels_last'): assert positive(rep['vae'][k]['img_s'])
    o = rep['overhead']
    assert o['trainer']['iters'] == 3 and positive(o['trainer']['img_s'])
    assert o['data'].startswith('LatentCache of 64 latents'), o['data']   # the Trainer read the cache the latents section built
    shutil.rmtree(ctx.scratch['latent_cache'])
    r = rep['ratios']['overhead: Trainer step / bare compiled step (img/s)']
    assert r['value'] == pytest.approx(o['trainer']['img_s'] / d['variants']['flowmatch_bf16_fused_compile']['img_s'])
