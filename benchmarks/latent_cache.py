"""Latent cache benchmark: encode synthetic images into a `flowmatch.latents.LatentCache`, then time reading batches back."""
import tempfile, time
import torch

from .timing import measure, sync
from .sections import _Tensors


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
    from flowmatch.train import batch_indices
    c, N, B = ctx.cfg, ctx.cfg['cache_items'], ctx.cfg['cache_batch']
    torch.manual_seed(0)
    vae = VAE.from_preset(c['vae_preset'])
    shape = (vae.config.in_channels, c['dit']['input_size'] * vae.downsample, c['dit']['input_size'] * vae.downsample)
    g = torch.Generator().manual_seed(0)  # synthetic labelled images in [-1, 1] (the cache's speed does not depend on what they show)
    images = _Tensors(torch.rand(N, *shape, generator=g) * 2 - 1, torch.randint(0, 10, (N,), generator=g), num_classes=10)
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
    def trainer_batches():  # the Trainer's reads of a dataset with get_batch (num_workers=0): epoch after epoch, seed 0
        epoch = 0
        while True:
            for b in batch_indices(len(cache), B, epoch): yield cache.get_batch(torch.tensor(b))
            epoch += 1
    it = trainer_batches()
    def batched():  # one training step's worth: a random batch gathered from the memory maps, on the device
        z, y = next(it)
        z.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        sync(ctx.device)
    r = measure(batched, 'cpu', warmup=2, budget_s=c['cache_budget_s'], min_iters=c['min_iters'])  # wall clock: CPU work
    per = ctx.per_call(r)
    out['load'] = dict(img_s=B / per, batch_ms=1e3 * per, iters=r['iters'],
                       method="as the Trainer reads a LatentCache: cache.get_batch(torch.tensor(b)) for b in "
                              "flowmatch.train.batch_indices(len(cache), batch, epoch), + .to(device)")
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
