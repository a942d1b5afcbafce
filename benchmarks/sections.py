"""The measurements. Each `bench_*` takes the run's `Context` and the report so far (the sections before it; `None` when run
alone) and returns a JSON-ready dict (numbers, settings, skipped parts). `SECTIONS`, at the end, lists them in run order."""
import contextlib, io, statistics, tempfile, time, traceback, warnings
from dataclasses import dataclass, field
import torch
from torch.utils.flop_counter import FlopCounterMode

from .timing import Deadline, measure, measure_round_robin, sync, fresh_memory, peak_memory_gb, max_rss_gb
from .reference import ReferenceDiT

FID_SAMPLES, FID_NFE = 50_000, 50


@dataclass
class Context:
    device: str
    quick: bool
    peak_flops: float
    deadline: Deadline
    cfg: dict = field(default_factory=dict)
    scratch: dict = field(default_factory=dict)  # folders one section leaves for a later one (removed at the end of the run)

    @property
    def cuda(self): return self.device == 'cuda'
    @property
    def stat(self):
        "Per-call time used for throughput: the median on a GPU; the best (min) on a shared CPU, where other work only adds time."
        return 'median' if self.cuda else 'min'
    def per_call(self, r): return r[self.stat + '_s']
    def amp(self, enabled=True):
        "bf16 autocast on this device (a no-op context when disabled)."
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=enabled)


def settings(device, quick):
    "Sizes and time caps: the real seed configuration on a GPU, small ones on a CPU."
    from flowmatch.dit import DIT_PRESETS
    if device == 'cuda':
        return dict(dit=dict(DIT_PRESETS['celebahq']), dit_name='celebahq (seed)', batch=256, warmup=5, min_iters=10,
                    step_budget_s=6.0, compile=True, compile_reserve_s=150.0,
                    sample_batch=512, sample_batch_compiled=1024, sample_steps=10, sample_budget_s=6.0,
                    vae_preset='sd', vae_batch=64, vae_budget_s=5.0,
                    cache_items=1024, cache_batch=256, cache_budget_s=2.0,
                    trainer_warm=8, trainer_steps=40, trainer_window=8, later_reserve_s=200.0, total_budget_s=480.0)
    cpu = dict(dit=dict(input_size=16, patch_size=2, in_channels=4, hidden_size=128, depth=4, num_heads=4, num_classes=0),
               dit_name='small CPU DiT', batch=32, warmup=1, min_iters=4, step_budget_s=4.0, compile=True, compile_reserve_s=120.0,
               sample_batch=32, sample_steps=5, sample_budget_s=3.0,
               vae_preset='digits', vae_batch=32, vae_budget_s=3.0,
               cache_items=512, cache_batch=64, cache_budget_s=2.0,
               toy_batch=256, toy_steps=60, digits_batch=32, dit_steps=20,
               digits_dit=dict(patch_size=2, hidden_size=128, depth=4, num_heads=4, num_classes=10),
               total_budget_s=600.0)
    if not quick: return cpu
    return dict(cpu, dit=dict(cpu['dit'], input_size=8, hidden_size=64, depth=2), dit_name='tiny CPU DiT', batch=16, min_iters=2,
                step_budget_s=0.4, compile=False, compile_reserve_s=0, sample_batch=16, sample_steps=2, sample_budget_s=0.3,
                vae_batch=8, vae_budget_s=0.3, cache_items=64, cache_batch=16, cache_budget_s=0.3, toy_steps=8, digits_batch=16,
                dit_steps=4, digits_dit=dict(cpu['digits_dit'], hidden_size=64, depth=2), total_budget_s=45.0)


def _params(model): return sum(p.numel() for p in model.parameters())


def _count(fn):
    "FLOPs of `fn()` (all of them, not per image)."
    with FlopCounterMode(display=False) as counter: fn()
    return counter.get_total_flops()


def count_forward_flops(model, x, t):
    "FLOPs of one forward pass counted by torch's FlopCounterMode (matmuls and convolutions), per image."
    with torch.no_grad(): return _count(lambda: model(x, t)) / x.shape[0]


# ---------------------------------------------------------------------------------------------------------------------- training
LOSS_STEPS = 1000  # training losses kept per variant: every variant starts from the same weights, batch, noise and times
LR = 1e-3  # high enough that the loss moves within the few dozen steps of a timing run (speed does not depend on it)


@dataclass
class Variant:
    "One way of running the training step."
    name: str
    cls: type
    amp: bool = False          # bf16 autocast
    fused: bool = False        # fused AdamW (CUDA) instead of foreach
    compiled: str = ''         # '': eager; 'model': torch.compile(model); 'step': the whole loss (path, model, MSE) compiled as one graph
    mode: str = None           # torch.compile mode
    batch: int = None          # default: the run's batch
    extra: bool = False        # run only when the later sections keep their time (`later_reserve_s`)

    def label(self):
        return dict(model='reference' if self.cls is ReferenceDiT else 'flowmatch', precision='bf16 autocast' if self.amp else 'fp32',
                    optimizer='AdamW fused' if self.fused else 'AdamW foreach', compiled=self.compiled or False,
                    compile_mode=self.mode or ('default' if self.compiled else None))


def _train_step(ctx, model, batch, v, losses):
    "One flow-matching training step on a fixed latent batch: loss, backward, AdamW step; the first losses go to `losses`."
    import torch.nn.functional as F
    from flowmatch.train import flow_matching_loss
    from flowmatch.paths import AffinePath, UniformTime
    cfg = ctx.cfg['dit']
    opt = torch.optim.AdamW(model.parameters(), lr=LR, **(dict(fused=True) if v.fused else dict(foreach=True)))
    x1 = torch.randn(batch, cfg['in_channels'], cfg['input_size'], cfg['input_size'], device=ctx.device)
    g = torch.Generator(ctx.device).manual_seed(0)
    if v.compiled == 'step':  # the random draws stay outside (a generator does not trace); path, model and loss form one graph
        path, times = AffinePath(), UniformTime()
        def inner(x0, x1, t):
            ps = path.sample(x0, x1, t)
            return F.mse_loss(model(ps.xt, ps.t).float(), ps.ut.float())
        inner = torch.compile(inner, mode=v.mode)
        def loss_fn():   # the same draws, in the same order, as flow_matching_loss
            x0 = torch.randn(x1.shape, generator=g, device=x1.device, dtype=x1.dtype)
            return inner(x0, x1, times(batch, device=x1.device, generator=g))
    else:
        loss_fn = lambda: flow_matching_loss(model, x1, generator=g)
    def step():
        with ctx.amp(v.amp): loss = loss_fn()
        loss.backward()
        opt.step(); opt.zero_grad(set_to_none=True)
        if len(losses) < LOSS_STEPS: losses.append(loss.detach())
    return step


def _prepare_variant(ctx, v, losses):
    "A fresh model and optimizer; returns its training step (already run once: with torch.compile, the compilation) and that time."
    fresh_memory(ctx.device)
    torch.manual_seed(0)
    model = v.cls(**ctx.cfg['dit']).to(ctx.device).train()
    if v.compiled == 'model': model = torch.compile(model, mode=v.mode)
    step = _train_step(ctx, model, v.batch or ctx.cfg['batch'], v, losses)
    t0 = time.perf_counter()
    step(); sync(ctx.device)
    return step, time.perf_counter() - t0


def _variant_row(ctx, r, v, first, fwd):
    B, per = v.batch or ctx.cfg['batch'], ctx.per_call(r)
    return dict(v.label(), batch=B, img_s=B / per, step_ms=1e3 * per, median_step_ms=1e3 * r['median_s'], iters=r['iters'],
                first_step_s=first, mfu=B / per * 3 * fwd / ctx.peak_flops, peak_mem_gib=peak_memory_gb(ctx.device))


def _failed(ctx, e, compiled):
    "The row of a variant that raised: skipped for torch.compile on a CPU (it needs a C++ toolchain there), an error otherwise."
    why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
    if compiled and not ctx.cuda: return dict(skipped=f'torch.compile does not work here: {why}')
    return dict(error=why, traceback=traceback.format_exc())


def _plan(ctx):
    from flowmatch.dit import DiT
    plan = [Variant('reference_fp32', ReferenceDiT), Variant('flowmatch_fp32', DiT), Variant('flowmatch_bf16', DiT, amp=True)]
    if ctx.cuda:
        B = ctx.cfg['batch']
        plan[1:1] = [Variant('reference_bf16', ReferenceDiT, amp=True)]
        plan += [Variant('flowmatch_bf16_fused', DiT, True, True),
                 Variant('flowmatch_bf16_fused_compile', DiT, True, True, 'model'),
                 Variant('flowmatch_bf16_fused_compile_step', DiT, True, True, 'step'),
                 Variant(f'flowmatch_bf16_fused_compile_b{2 * B}', DiT, True, True, 'model', batch=2 * B, extra=True),
                 # CUDA graphs replay the compiled forward and backward without per-kernel launches
                 Variant('flowmatch_bf16_fused_compile_cudagraphs', DiT, True, True, 'model', mode='reduce-overhead', extra=True),
                 Variant('flowmatch_bf16_fused_compile_max_autotune', DiT, True, True, 'model', mode='max-autotune-no-cudagraphs',
                         extra=True)]
    elif ctx.cfg['compile']: plan += [Variant('flowmatch_fp32_compile', DiT, compiled='model')]  # CPU: fp32, fast on every CPU
    return plan


def _loss_agreement(curves, batch):
    "Each variant's first losses next to flowmatch_fp32's (same weights, batch, noise and times): the largest relative difference."
    base = curves.get('flowmatch_fp32')
    if not base: return {}
    out = dict(flowmatch_fp32=base, note='losses of the first steps, every variant from the same start; max_rel_diff = max over '
               'the steps both ran of |loss - fp32 loss| / fp32 loss; fp32_first_last: how far the fp32 loss moved over those steps')
    for k, c in curves.items():
        if k == 'flowmatch_fp32' or k.startswith('reference') or batch.get(k) != batch['flowmatch_fp32']: continue
        n = min(len(c), len(base))
        out[k] = dict(steps=n, max_rel_diff=max(abs(a - b) / abs(b) for a, b in zip(c, base)),
                      fp32_first_last=[base[0], base[n - 1]], last=c[n - 1], losses=c[:n])
    return out


def bench_dit_train(ctx, report=None):
    "Training img/s of flowmatch's DiT in each precision/compile variant next to a plain reference DiT."
    from flowmatch.dit import DiT, dit_flops
    c = ctx.cfg
    fwd = dit_flops(**c['dit'])
    ref = ReferenceDiT(**c['dit']).to(ctx.device)
    x1 = torch.randn(1, c['dit']['in_channels'], c['dit']['input_size'], c['dit']['input_size'], device=ctx.device)
    counted = count_forward_flops(ref, x1, torch.rand(1, device=ctx.device))
    out = dict(config=dict(c['dit'], name=c['dit_name']), batch=c['batch'], device=ctx.device,
               params=dict(flowmatch=_params(DiT(**c['dit'])), reference=_params(ref)),
               flops_per_img=dict(forward_formula=fwd, forward_counted_reference=counted, train=3 * fwd,
                                  note='flowmatch.dit.dit_flops; training = 3 x forward (backward = 2 x forward)'),
               variants={})
    del ref
    plan = _plan(ctx)
    out['timing'] = 'one variant after the other, median step (CUDA events)'
    ready, curves, batches = {}, {}, {}  # CPU: variants prepared now, timed together below
    for v in plan:
        need = (c['compile_reserve_s'] if v.compiled else 3 * c['step_budget_s'] + 5) + (c.get('later_reserve_s', 0) if v.extra else 0)
        if ctx.deadline.left() < need:
            out['variants'][v.name] = dict(skipped=f'time budget: {ctx.deadline.left():.0f} s left, this variant needs ~{need:.0f} s')
            continue
        step, losses = None, []
        try:  # one failing variant (out of memory, a compiler problem) must not cost the others
            step, first = _prepare_variant(ctx, v, losses)
            if ctx.cuda:  # one after the other, so each gets its own peak memory
                r = measure(step, ctx.device, warmup=c['warmup'], budget_s=c['step_budget_s'], min_iters=c['min_iters'])
                out['variants'][v.name] = _variant_row(ctx, r, v, first, fwd)
            else: ready[v.name] = (step, v, first)
            curves[v.name], batches[v.name] = losses, v.batch or c['batch']
        except Exception as e: out['variants'][v.name] = _failed(ctx, e, v.compiled)
        step = None  # on a GPU: free this variant's model and optimizer before the next one
        if v.compiled and ctx.cuda: torch.compiler.reset()   # drop compiled graphs (and the weights they hold on to)
    if ready:  # a shared CPU: take turns, so that load from other jobs falls on every variant alike
        rs = measure_round_robin({k: s for k, (s, *_) in ready.items()}, warmup=c['warmup'], budget_s=c['step_budget_s'],
                                 min_iters=c['min_iters'])
        for k, (_, v, first) in ready.items(): out['variants'][k] = _variant_row(ctx, rs[k], v, first, fwd)
        out['variants'] = {v.name: out['variants'][v.name] for v in plan if v.name in out['variants']}  # in plan order
        out['timing'] = 'variants timed in turn (round robin), fastest step of each'
        del ready
        torch.compiler.reset()
    out['loss_agreement'] = _loss_agreement({k: [float(l) for l in ls] for k, ls in curves.items()}, batches)
    fresh_memory(ctx.device)
    if not ctx.cuda: out['process_max_rss_gib'] = max_rss_gb()
    return out


# ---------------------------------------------------------------------------------------------------------------------- memory
MEMORY_BATCH = 256  # the memory target: the seed configuration at batch 256 fits in 24 GB


def bench_memory(ctx, report=None):
    "Estimated peak memory of the seed DiT's training step at batch 256 (fp32 and bf16), on any device; next to the measured peak on a GPU."
    from flowmatch.dit import DiT, DIT_PRESETS
    from flowmatch.memory import estimate_memory
    try: import torch.distributed._tools.mem_tracker  # noqa: F401  (a private torch module: it may move)
    except ImportError as e: return dict(skipped=f'torch.distributed._tools.mem_tracker is not importable here: {e}')
    dit = dict(DIT_PRESETS['celebahq'])
    plan = [('flowmatch_bf16', DiT, True)] if ctx.quick else [('flowmatch_fp32', DiT, False), ('flowmatch_bf16', DiT, True),
                                                              ('reference_bf16', ReferenceDiT, True)]
    out = dict(config=dict(dit, name='celebahq (seed)'), batch=MEMORY_BATCH, device=ctx.device, target_gib=24e9 / 2**30,
               method='flowmatch.memory.estimate_memory: MemTracker on fake tensors (no data, no compute), the second of two eager training '
                      'steps with AdamW; tensor memory only (no allocator cache, no CUDA context)', estimates={})
    for name, cls, amp in plan:  # the bare step of `dit_train`: no EMA copy, no clipping
        t0 = time.perf_counter()
        est = estimate_memory(lambda: cls(**dit), (MEMORY_BATCH, dit['in_channels'], dit['input_size'], dit['input_size']),
                              'bf16' if amp else 'no', clip_grad=None, ema=False, device=ctx.device)
        out['estimates'][name] = dict(est, seconds=time.perf_counter() - t0, fits_target=est['total'] <= out['target_gib'])
    if ctx.cuda:  # what the training section measured for the same step, when it ran at batch 256
        d = (report or {}).get('dit_train', {})
        for name in out['estimates']:
            v = d.get('variants', {}).get(name, {})
            if d.get('batch') == MEMORY_BATCH and 'peak_mem_gib' in v: out['estimates'][name]['measured_peak_gib'] = v['peak_mem_gib']
    return out


# ---------------------------------------------------------------------------------------------------------------------- sampling
def _sampling_variant(ctx, B, compiled):
    "img-NFE/s of Euler sampling with flowmatch's DiT at batch B, eager or with torch.compile."
    from flowmatch.dit import DiT
    from flowmatch.samplers import sample, CountNFE
    c, k = ctx.cfg, ctx.cfg['sample_steps']
    fresh_memory(ctx.device)
    torch.manual_seed(0)
    net = DiT(**c['dit']).to(ctx.device).eval().requires_grad_(False)
    model = CountNFE(torch.compile(net) if compiled else net)
    x0 = torch.randn(B, c['dit']['in_channels'], c['dit']['input_size'], c['dit']['input_size'], device=ctx.device)
    def step():
        with ctx.amp(ctx.cuda): sample(model, x0, method='euler', steps=k)
    t0 = time.perf_counter()
    step(); sync(ctx.device)
    first = time.perf_counter() - t0
    r = measure(step, ctx.device, warmup=1, budget_s=c['sample_budget_s'], min_iters=c['min_iters'])
    nfe = model.nfe / (2 + r['iters'])  # counted, not assumed: euler takes one model call per step
    img_nfe_s = B * nfe / ctx.per_call(r)
    out = dict(batch=B, compiled=compiled, nfe_per_call=nfe, img_nfe_s=img_nfe_s, call_ms=1e3 * ctx.per_call(r), iters=r['iters'],
               first_call_s=first, peak_mem_gib=peak_memory_gb(ctx.device))
    if compiled: torch.compiler.reset()
    return out


def bench_sampling(ctx, report=None):
    "Forward-only sampling throughput (img x NFE / s) of flowmatch's DiT through `flowmatch.samplers.sample`, and a 50k FID set's time."
    from flowmatch.dit import dit_flops
    c = ctx.cfg
    fwd = dit_flops(**c['dit'])
    plan = [('eager', c['sample_batch'], False)]
    if ctx.cuda: plan.append((f"compile_b{c['sample_batch_compiled']}", c['sample_batch_compiled'], True))
    variants = {}
    for name, B, compiled in plan:
        if compiled and ctx.deadline.left() < c['compile_reserve_s'] / 2:
            variants[name] = dict(skipped=f'time budget: {ctx.deadline.left():.0f} s left'); continue
        try: variants[name] = _sampling_variant(ctx, B, compiled)
        except Exception as e:
            if name == 'eager': raise
            variants[name] = _failed(ctx, e, compiled)
        if 'img_nfe_s' in variants[name]: variants[name]['mfu'] = variants[name]['img_nfe_s'] * fwd / ctx.peak_flops
    best_name = max((k for k in variants if 'img_nfe_s' in variants[k]), key=lambda k: variants[k]['img_nfe_s'])
    best = variants[best_name]
    out = dict(config=dict(c['dit'], name=c['dit_name']), method='euler', steps=c['sample_steps'],
               precision='bf16 autocast' if ctx.cuda else 'fp32', best=best_name, variants=variants,
               **{k: best[k] for k in ('batch', 'nfe_per_call', 'img_nfe_s', 'call_ms', 'iters', 'mfu', 'peak_mem_gib')},
               fid50k_nfe=FID_NFE, fid50k_dit_s=FID_SAMPLES * FID_NFE / best['img_nfe_s'],
               latent_shape=[c['dit']['in_channels'], c['dit']['input_size'], c['dit']['input_size']])
    vae = (report or {}).get('vae', {})
    if vae.get('latent_shape') == out['latent_shape'] and 'decode' in vae:  # the VAE section decoded latents of this very shape
        dec = max(v['img_s'] for k, v in vae.items() if k.startswith('decode') and isinstance(v, dict) and 'img_s' in v)
        out['fid50k_decode_s'] = FID_SAMPLES / dec
        out['fid50k_total_s'] = out['fid50k_dit_s'] + out['fid50k_decode_s']
    return out


# ---------------------------------------------------------------------------------------------------------------------- VAE
def bench_vae(ctx, report=None):
    "Encode and decode throughput of `flowmatch.vae.VAE` (random weights: speed does not depend on them)."
    from flowmatch.vae import VAE
    c, B = ctx.cfg, ctx.cfg['vae_batch']
    torch.manual_seed(0)
    vae = VAE.from_preset(c['vae_preset']).to(ctx.device).eval().requires_grad_(False)
    C, S = vae.config.in_channels, c['dit']['input_size'] * vae.downsample  # images whose latents the DiT above trains on
    x = torch.rand(B, C, S, S, device=ctx.device) * 2 - 1
    z = torch.randn(B, *vae.latent_shape((C, S, S)), device=ctx.device)
    out = dict(preset=c['vae_preset'], image_shape=[C, S, S], latent_shape=list(z.shape[1:]), batch=B, params=_params(vae),
               precision='bf16 autocast' if ctx.cuda else 'fp32')
    with torch.no_grad():
        out['flops_per_img'] = dict(encode=_count(lambda: vae.encode(x[:1], sample=False)), decode=_count(lambda: vae.decode(z[:1])))
    runs = [('encode', lambda: vae.encode(x, sample=False)), ('decode', lambda: vae.decode(z))]
    if ctx.cuda:  # channels-last convolutions: the layout tensor cores read without transposes
        cl = torch.channels_last
        xc, zc = x.to(memory_format=cl), z.to(memory_format=cl)
        runs += [('encode_channels_last', lambda: vae.encode(xc, sample=False)), ('decode_channels_last', lambda: vae.decode(zc))]
        out['flops_per_img'].update(encode_channels_last=out['flops_per_img']['encode'], decode_channels_last=out['flops_per_img']['decode'])
    for name, fn in runs:
        if name.endswith('channels_last'): vae.to(memory_format=torch.channels_last)
        fresh_memory(ctx.device)
        def step():
            with torch.no_grad(), ctx.amp(ctx.cuda): fn()
        r = measure(step, ctx.device, warmup=c['warmup'], budget_s=c['vae_budget_s'], min_iters=c['min_iters'])
        img_s = B / ctx.per_call(r)
        out[name] = dict(img_s=img_s, batch_ms=1e3 * ctx.per_call(r), iters=r['iters'], peak_mem_gib=peak_memory_gb(ctx.device),
                         mfu=img_s * out['flops_per_img'][name] / ctx.peak_flops)
    return out


# ---------------------------------------------------------------------------------------------------------------------- latent cache
def bench_latents(ctx, report=None):
    "Build a small `flowmatch.latents.LatentCache` from synthetic images, then time reading batches back as the Trainer does."
    from .latent_cache import build_and_time
    return build_and_time(ctx, report or {})


# ---------------------------------------------------------------------------------------------------------------------- overhead
class _Tensors(torch.utils.data.Dataset):
    "A map-style dataset of (x, y) over two tensors."
    def __init__(self, x, y, num_classes=0): self.x, self.y, self.num_classes = x, y, num_classes
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], self.y[i]


def _count_syncs(trainer, steps):
    "Count, with CUDA's sync debug mode, the calls that make the host wait for the GPU inside each of the trainer's next `steps` steps."
    counts, step = [], trainer._train_step
    def counted(*args):
        if len(counts) >= steps: return step(*args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try: return step(*args)
            finally:
                torch.cuda.set_sync_debug_mode('default')
                counts.append(sum('synchroniz' in str(w.message) for w in caught))
    trainer._train_step = counted
    return counts


def _trainer_throughput(ctx, model, dataset, batch, warm, steps, lr, window=1, **config):
    """Train with `flowmatch.train.Trainer`; img/s from its own timings after `warm` steps, and over the whole `fit`. The Trainer
    times the steps between two reads of the loss (`log_every`): `window` steps (warm is a multiple of it)."""
    from flowmatch.train import Trainer, TrainConfig
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        cfg = TrainConfig(max_steps=warm + steps, batch_size=batch, lr=lr, ema_decay=0.999, checkpoint_every=0, log_every=window,
                          progress=False, output_dir=tmp, seed=0, **config)
        t0 = time.perf_counter()
        tr = Trainer(model, dataset, cfg)
        t1 = time.perf_counter()
        syncs = _count_syncs(tr, warm) if ctx.cuda and torch.cuda.is_available() else None  # in the untimed first window
        tr.fit()
        t2 = time.perf_counter()
        tr.close()
        step_s = [batch / r['img_s'] for r in tr.history[warm:]]
    per_step = min(step_s) if ctx.stat == 'min' else statistics.median(step_s)
    fit_s = t2 - t1
    out = dict(img_s=batch / per_step, step_ms=1e3 * per_step, iters=len(step_s), window_steps=window, init_s=t1 - t0, fit_s=fit_s,
               fit_fixed_s=max(0.0, fit_s - sum(batch / r['img_s'] for r in tr.history)),
               note=f"img_s: {ctx.stat} over the Trainer's own timings of each window of {window} step(s) between two reads of the loss "
                    "(data loading, EMA, clipping included); init_s: Trainer(...) (Accelerator, optimizer, EMA copy); fit_fixed_s: "
                    "the part of fit() outside the steps (run.json, trackers, log lines, final checkpoint)")
    if syncs is not None:  # the first step compiles: its count is not the steady state
        out.update(syncs_per_step=syncs[1:], syncs_note="host waits for the GPU inside each step (torch.cuda.set_sync_debug_mode "
                   "'warn'), steps 2..warm; the loss is read once per window, outside the steps")
    return out


def _plain_throughput(ctx, model, data, labels, batch, warm, steps, lr):
    "The same model trained by a hand-written loop: random batch, CondOT flow matching loss, backward, AdamW."
    opt = torch.optim.AdamW(model.parameters(), lr=lr, foreach=True)  # as the Trainer's optimizer on a CPU
    g = torch.Generator().manual_seed(0)
    model.train()
    def step():
        i = torch.randint(len(data), (batch,), generator=g)
        x1 = data[i]
        x0 = torch.randn(x1.shape, generator=g)
        t = torch.rand(batch, generator=g)
        tb = t.view(-1, *[1] * (x1.ndim - 1))
        kw = {} if labels is None else dict(y=labels[i])
        loss = (model((1 - tb) * x0 + tb * x1, t, **kw) - (x1 - x0)).pow(2).mean()
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    r = measure(step, ctx.device, warmup=warm, budget_s=0, min_iters=steps, max_iters=steps)  # as many steps as the Trainer
    return dict(img_s=batch / ctx.per_call(r), step_ms=1e3 * ctx.per_call(r), iters=r['iters'])


class _DeviceTensors(_Tensors):
    "Latents already in GPU memory, read by the Trainer with one gather per batch (as a latent cache held on the GPU)."
    def get_batch(self, idx): idx = idx.to(self.x.device); return self.x[idx], self.y[idx]


def _trainer_on_gpu(ctx):
    "The seed DiT trained by the full `Trainer` (bf16, compiled, fused AdamW, clipping, EMA, per-step log) next to the bare step."
    from flowmatch.dit import DiT
    c, B, d = ctx.cfg, ctx.cfg['batch'], ctx.cfg['dit']
    if ctx.deadline.left() < c['compile_reserve_s']: return dict(skipped=f'time budget: {ctx.deadline.left():.0f} s left')
    if 'latent_cache' in ctx.scratch:  # the cache the latents section built: memory-mapped shards, one gather per batch
        from flowmatch.latents import LatentCache
        data = LatentCache(ctx.scratch['latent_cache'])
        source = f'LatentCache of {len(data)} latents (memory-mapped, read with get_batch, moved to the GPU each step)'
    else:
        g, n = torch.Generator(ctx.device).manual_seed(0), 16 * B
        data = _DeviceTensors(torch.randn(n, d['in_channels'], d['input_size'], d['input_size'], device=ctx.device, generator=g),
                              torch.zeros(n, dtype=torch.long, device=ctx.device))
        source = f'{n} random latents in GPU memory (no latent cache was built in this run)'
    torch.manual_seed(0)
    fresh_memory(ctx.device)
    tr = _trainer_throughput(ctx, DiT(**d), data, B, c['trainer_warm'], c['trainer_steps'], 1e-4, window=c['trainer_window'],
                             mixed_precision='bf16', compile=True)
    tr['peak_mem_gib'] = peak_memory_gb(ctx.device)
    torch.compiler.reset()
    return dict(model=c['dit_name'], batch=B, data=source, trainer=tr, bare_step='dit_train.variants.flowmatch_bf16_fused_compile',
                note=f"Trainer: data gather, loss, backward, clip_grad_norm 1.0, fused AdamW, fp32 EMA, a log record every step (the "
                     f"losses read every {c['trainer_window']} steps); bare step: loss, backward, fused AdamW on a fixed batch")


def bench_overhead(ctx, report=None):
    "The Trainer next to a bare loop: on a CPU the 2-D toy and a digits-latent-sized DiT; on a GPU the seed DiT, compiled."
    if ctx.cuda: return _trainer_on_gpu(ctx)
    from flowmatch.toy import MLPVelocity
    from flowmatch.data import ToyPoints
    from flowmatch.dit import DiT
    c, out = ctx.cfg, {}
    # 2-D toy: MLPVelocity on moons
    B, steps = c['toy_batch'], c['toy_steps']
    toy = ToyPoints('moons', 8 * B, seed=0)
    torch.manual_seed(0)
    out['toy'] = dict(model='MLPVelocity()', dataset=f'ToyPoints(moons, {len(toy)})', batch=B, steps=steps,
                      trainer=_trainer_throughput(ctx, MLPVelocity(), toy, B, 3, steps, 1e-3))
    torch.manual_seed(0)
    out['toy']['plain'] = _plain_throughput(ctx, MLPVelocity(), toy.x, None, B, 3, steps, 1e-3)
    # digits-latent-sized DiT, class-conditional: latents of 32x32 Digits through the 'digits' VAE
    from flowmatch.vae import VAE
    zc, zh, _ = VAE.from_preset('digits').latent_shape((1, 32, 32))
    d, B, steps = dict(c['digits_dit'], in_channels=zc, input_size=zh), c['digits_batch'], c['dit_steps']
    g = torch.Generator().manual_seed(0)
    lat = _Tensors(torch.randn(8 * B, d['in_channels'], d['input_size'], d['input_size'], generator=g),
                   torch.randint(0, d['num_classes'], (8 * B,), generator=g), d['num_classes'])
    torch.manual_seed(0)
    out['digits_dit'] = dict(model=dict(d), dataset=f'{len(lat)} synthetic latents {tuple(lat.x.shape[1:])} with labels', batch=B,
                             steps=steps, trainer=_trainer_throughput(ctx, DiT(**d), lat, B, 2, steps, 1e-4))
    torch.manual_seed(0)
    out['digits_dit']['plain'] = _plain_throughput(ctx, DiT(**d), lat.x, lat.y, B, 2, steps, 1e-4)
    return out


# Run order matters: memory compares with training's measured peaks, sampling adds the VAE's decode time to its 50k-sample
# estimate, the latent cache compares with training, and the GPU overhead section trains on the cache the latents section built.
SECTIONS = dict(dit_train=bench_dit_train, memory=bench_memory, vae=bench_vae, sampling=bench_sampling, latents=bench_latents,
                overhead=bench_overhead)
