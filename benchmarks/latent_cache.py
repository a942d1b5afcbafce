"""Latent cache benchmark: encode synthetic images into a `flowmatch.latents.LatentCache`, then time reading batches back."""
import tempfile, time
import torch

from .timing import measure, sync


class _Images(torch.utils.data.Dataset):
    "Synthetic labelled images in [-1, 1] (the cache's speed does not depend on what they show)."
    num_classes = 10
    def __init__(self, n, shape, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.rand(n, *shape, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], self.y[i]


def _fastest_training(report):
    "img/s of the fastest flowmatch training variant measured in this run, and its name."
    variants = (report.get('dit_train') or {}).get('variants', {})
    done = {k: v['img_s'] for k, v in variants.items() if k.startswith('flowmatch') and 'img_s' in v}
    if not done: return None, None
    best = max(done, key=done.get)
    return done[best], best


def build_and_time(ctx, report):
    from flowmatch.vae import VAE
    from flowmatch.latents import LatentCache
    c, N, B = ctx.cfg, ctx.cfg['cache_items'], ctx.cfg['cache_batch']
    torch.manual_seed(0)
    vae = VAE.from_preset(c['vae_preset'])
    shape = (vae.config.in_channels, c['dit']['input_size'] * vae.downsample, c['dit']['input_size'] * vae.downsample)
    images = _Images(N, shape)
    out = dict(items=N, batch=B, image_shape=list(shape), vae_preset=c['vae_preset'])
    root = tempfile.mkdtemp(prefix='flowmatch_bench_cache_')
    ctx.scratch['latent_cache'] = root  # kept for the Trainer in the overhead section; the run removes it at the end
    t0 = time.perf_counter()
    cache = LatentCache.build(root, images, vae, batch_size=B, shard_size=max(B, N // 4), progress=False)
    sync(ctx.device)
    build_s = time.perf_counter() - t0
    out.update(latent_shape=list(cache.shape), storage_dtype=cache.manifest['dtype'], shards=cache.manifest['num_shards'],
               build=dict(img_s=N / build_s, seconds=build_s, note='LatentCache.build: VAE encode (its own settings, fp32) + '
                                                                   'writing the shards and the manifest'))
    batches = cache.loader(B, shuffle=True, seed=0, device=ctx.device)   # flowmatch's batched loader
    it = iter(batches)
    def batched():  # one training step's worth: a random batch gathered from the memory maps, on the device
        nonlocal it
        try: next(it)
        except StopIteration: it = iter(batches); next(it)
        sync(ctx.device)
    r = measure(batched, 'cpu', warmup=2, budget_s=c['cache_budget_s'], min_iters=c['min_iters'])  # wall clock: CPU work
    per = ctx.per_call(r)
    out['load'] = dict(img_s=B / per, batch_ms=1e3 * per, iters=r['iters'],
                       method="LatentCache.loader(batch, shuffle=True, device=...) (a LatentLoader)")
    loader = torch.utils.data.DataLoader(cache, B, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    it_items = iter(loader)
    def itemwise():  # a DataLoader over the items, one __getitem__ per latent (how the Trainer reads a dataset without get_batch)
        nonlocal it_items
        try: z, y = next(it_items)
        except StopIteration: it_items = iter(loader); z, y = next(it_items)
        z.to(ctx.device, non_blocking=True); sync(ctx.device)
    r = measure(itemwise, 'cpu', warmup=2, budget_s=c['cache_budget_s'], min_iters=c['min_iters'])
    per = ctx.per_call(r)
    out['load_items'] = dict(img_s=B / per, batch_ms=1e3 * per, iters=r['iters'],
                             method='DataLoader(cache, batch, shuffle=True), num_workers=0, + .to(device)')
    out['train_img_s'], out['train_source'] = _fastest_training(report)
    if out['train_img_s'] is None: del out['train_img_s'], out['train_source']
    return out
