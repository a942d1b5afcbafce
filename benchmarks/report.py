"""Ratios between measured numbers (stored with the paths of the numbers they divide) and the printed tables."""


def errors(node, path=''):
    "Dotted paths of every 'error' entry in the report (a failed section or a failed part of one)."
    if not isinstance(node, dict): return []
    found = [path or '.'] if 'error' in node else []
    for k, v in node.items(): found += errors(v, f'{path}.{k}' if path else k)
    return found


def get(report, path):
    "The value at a dotted `path` of the report, e.g. 'dit_train.variants.flowmatch_fp32.img_s' (None when absent)."
    node = report
    for key in path.split('.'):
        if not isinstance(node, dict) or key not in node: return None
        node = node[key]
    return node


def add_ratio(report, name, numerator, denominator):
    "Store report['ratios'][name] = numerator / denominator (both dotted paths), when both numbers were measured."
    a, b = get(report, numerator), get(report, denominator)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        report.setdefault('ratios', {})[name] = dict(value=a / b, numerator=numerator, denominator=denominator)


def section_ratios(report, section):
    "The ratios that relate the numbers of `section`."
    s = report.get(section) or {}
    if section == 'dit_train':
        add_ratio(report, 'dit_train: FLOP formula / counted FLOPs', 'dit_train.flops_per_img.forward_formula',
                  'dit_train.flops_per_img.forward_counted_reference')
        for v in s.get('variants', {}):
            if v != 'reference_fp32':
                add_ratio(report, f'dit_train: {v} / reference_fp32 (img/s)', f'dit_train.variants.{v}.img_s',
                          'dit_train.variants.reference_fp32.img_s')
        base = 'dit_train.variants.flowmatch_bf16_fused_compile.img_s'
        for v in ('reference_bf16', 'flowmatch_bf16'):
            add_ratio(report, f'dit_train: flowmatch_bf16_fused_compile / {v} (img/s)', base, f'dit_train.variants.{v}.img_s')
        for v in s.get('variants', {}):
            if v.startswith('flowmatch_bf16_fused_compile_'):
                add_ratio(report, f'dit_train: {v} / flowmatch_bf16_fused_compile (img/s)', f'dit_train.variants.{v}.img_s', base)
    elif section == 'memory':
        for v in s.get('estimates', {}):
            add_ratio(report, f'memory: {v} measured / estimated peak (GiB)', f'dit_train.variants.{v}.peak_mem_gib',
                      f'memory.estimates.{v}.total')
    elif section == 'sampling':
        add_ratio(report, 'sampling: fid50k with VAE decode / DiT only (time)', 'sampling.fid50k_total_s', 'sampling.fid50k_dit_s')
        for v in s.get('variants', {}):
            if v != 'eager':
                add_ratio(report, f'sampling: {v} / eager (img-NFE/s)', f'sampling.variants.{v}.img_nfe_s', 'sampling.variants.eager.img_nfe_s')
    elif section == 'vae':
        for k in ('encode', 'decode'):
            add_ratio(report, f'vae: {k} channels_last / default (img/s)', f'vae.{k}_channels_last.img_s', f'vae.{k}.img_s')
    elif section == 'latents':
        add_ratio(report, 'latents: cache load / training consumption (img/s)', 'latents.load.img_s', 'latents.train_img_s')
        add_ratio(report, 'latents: item-wise DataLoader / training consumption (img/s)', 'latents.load_items.img_s', 'latents.train_img_s')
    elif section == 'overhead':
        add_ratio(report, 'overhead: Trainer step / bare compiled step (img/s)', 'overhead.trainer.img_s',
                  'dit_train.variants.flowmatch_bf16_fused_compile.img_s')
        for part in ('toy', 'digits_dit'):
            add_ratio(report, f'overhead: {part} Trainer step / plain loop (img/s)', f'overhead.{part}.trainer.img_s',
                      f'overhead.{part}.plain.img_s')


def num(v, digits=3):
    "A short human-readable number: thousands separators for big values, `digits` significant figures for small ones."
    if v is None: return '-'
    if isinstance(v, bool): return 'yes' if v else 'no'
    if isinstance(v, str): return v
    if abs(v) >= 10 ** digits: return f'{v:,.0f}'
    return f'{v:.{digits}g}'


def pct(v): return '-' if v is None else f'{100 * v:.1f}%'


def table(headers, rows):
    "Rows of strings as an aligned text table (first column left, the others right)."
    rows = [[str(c) for c in r] for r in rows]
    w = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = lambda cells: '  '.join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cells))
    return '\n'.join([line([str(h) for h in headers]), '  '.join('-' * x for x in w)] + [line(r) for r in rows])


def _ratio_rows(report, prefix):
    return [[name.split(': ', 1)[1], f"{r['value']:.3f}x"] for name, r in report.get('ratios', {}).items() if name.startswith(prefix)]


def format_section(report, name):
    "The printed block of one section."
    s = report.get(name)
    if s is None: return ''
    title = dict(dit_train='DiT training step', memory='Training memory at the seed configuration (estimated)', sampling='Sampling (forward only)', vae='VAE encode / decode',
                 latents='Latent cache loader', overhead='Framework overhead (Trainer vs plain loop)')[name]
    head = f"\n== {title}  [{s.get('section_s', 0):.1f} s]"
    if 'error' in s: return f"{head}\nERROR: {s['error']}"
    if 'skipped' in s: return f"{head}\nskipped: {s['skipped']}"
    out = [head]
    if name == 'dit_train':
        c = s['config']
        out.append(f"{c['name']}: {c['input_size']}x{c['input_size']}x{c['in_channels']} latents, patch {c['patch_size']}, hidden "
                   f"{c['hidden_size']}, depth {c['depth']}, heads {c['num_heads']}; batch {s['batch']}; "
                   f"{s['flops_per_img']['train'] / 1e9:.3g} GFLOP/img per training step; params {s['params']['flowmatch']:,}")
        rows = []
        for v, r in s['variants'].items():
            if 'skipped' in r or 'error' in r:
                rows.append([v, 'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR: ' + r['error'][:100], '', '', '', '']); continue
            ratio = report.get('ratios', {}).get(f'dit_train: {v} / reference_fp32 (img/s)')
            rows.append([v, num(r['img_s']), num(r['step_ms']), pct(r['mfu']), num(r['peak_mem_gib']),
                         f"{ratio['value']:.2f}x" if ratio else '1.00x' if v == 'reference_fp32' else '-'])
        out.append(table(['variant', 'img/s', 'ms/step', 'MFU', 'peak GiB', 'vs reference'], rows))
        out.append(f"timing: {s['timing']}")
        if 'process_max_rss_gib' in s: out.append(f"process max RSS so far: {s['process_max_rss_gib']:.2f} GiB (per-variant peaks: GPU only)")
    elif name == 'memory':
        c = s['config']
        out.append(f"{c['name']}, batch {s['batch']}, on {s['device']}; {s['method']}")
        out.append(table(['step', 'params', 'grads', 'activations', 'optimizer', 'temporary', 'total GiB', f"<= {s['target_gib']:.1f} GiB",
                          'measured GiB'],
                         [[k, num(e['parameter']), num(e['gradient']), num(e['activation']), num(e['optstate']), num(e['temp']),
                           num(e['total']), e['fits_target'], num(e.get('measured_peak_gib'))] for k, e in s['estimates'].items()]))
    elif name == 'sampling':
        rows = [['img-NFE/s', num(s['img_nfe_s'])], ['ms per call', f"{num(s['call_ms'])} ({s['nfe_per_call']:g} NFE, batch {s['batch']})"],
                ['MFU (forward)', pct(s['mfu'])], ['peak GiB', num(s['peak_mem_gib'])],
                [f'50k samples x {s["fid50k_nfe"]} NFE, DiT', f"{s['fid50k_dit_s'] / 60:.1f} min"]]
        if 'fid50k_total_s' in s: rows.append(['  + VAE decode of 50k', f"{s['fid50k_total_s'] / 60:.1f} min"])
        out.append(f"{s['config']['name']}, {s['precision']}, {s['method']}; best variant: {s['best']}")
        out.append(table(['metric', 'value'], rows))
        out.append(table(['variant', 'batch', 'img-NFE/s', 'ms/call', 'MFU', 'peak GiB'],
                         [[k, '-', v.get('skipped') or v.get('error', '')[:80], '', '', ''] if 'img_nfe_s' not in v else
                          [k, v['batch'], num(v['img_nfe_s']), num(v['call_ms']), pct(v.get('mfu')), num(v['peak_mem_gib'])]
                          for k, v in s['variants'].items()]))
    elif name == 'vae':
        out.append(f"preset {s['preset']!r} ({s['params']:,} params), images {'x'.join(map(str, s['image_shape']))} -> latents "
                   f"{'x'.join(map(str, s['latent_shape']))}, batch {s['batch']}, {s['precision']}")
        out.append(table(['VAE', 'img/s', 'ms/batch', 'GFLOP/img', 'MFU', 'peak GiB'],
                         [[k, num(s[k]['img_s']), num(s[k]['batch_ms']), num(s['flops_per_img'][k] / 1e9), pct(s[k]['mfu']),
                           num(s[k]['peak_mem_gib'])] for k in s['flops_per_img'] if k in s]))
    elif name == 'latents':
        out.append(f"{s['items']} latents {'x'.join(map(str, s['latent_shape']))} ({s['storage_dtype']}, {s['shards']} shards) from "
                   f"{'x'.join(map(str, s['image_shape']))} images through VAE preset {s['vae_preset']!r}; batch {s['batch']}")
        rows = [['build (encode + write)', num(s['build']['img_s']), '-'],
                ['load: get_batch (as the Trainer)', num(s['load']['img_s']), num(s['load']['batch_ms'])],
                ['load: DataLoader, item by item', num(s['load_items']['img_s']), num(s['load_items']['batch_ms'])]]
        if 'train_img_s' in s: rows.append([f"training consumes ({s['train_source']})", num(s['train_img_s']), '-'])
        out.append(table(['latents', 'img/s', 'ms/batch'], rows))
    elif name == 'overhead' and 'trainer' in s:
        t = s['trainer']
        out.append(f"{s['model']}, batch {s['batch']}, data: {s['data']}. {s['note']}")
        out.append(table(['training loop', 'img/s', 'ms/step', 'init s', 'fit fixed s', 'peak GiB'],
                         [['Trainer', num(t['img_s']), num(t['step_ms']), num(t['init_s']), num(t['fit_fixed_s']), num(t['peak_mem_gib'])]]))
    elif name == 'overhead':
        rows = []
        for part in ('toy', 'digits_dit'):
            p = s[part]
            rows += [[f'{part}: plain loop', num(p['plain']['img_s']), num(p['plain']['step_ms']), '-', '-'],
                     [f'{part}: Trainer', num(p['trainer']['img_s']), num(p['trainer']['step_ms']), num(p['trainer']['init_s']),
                      num(p['trainer']['fit_fixed_s'])]]
        out.append(table(['training loop', 'img/s', 'ms/step', 'init s', 'fit fixed s'], rows))
    ratios = _ratio_rows(report, name + ':')
    if ratios: out.append(table(['ratio', 'value'], ratios))
    return '\n'.join(out)
