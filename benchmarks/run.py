"""Run every flowmatch benchmark, print a table per section and write a JSON report.

    python -m benchmarks.run --device cpu --out bench_cpu.json --quick   # smoke run, < 1 min on 2 cores
    python -m benchmarks.run --device cpu --out bench_cpu.json           # a few minutes
    python -m benchmarks.run --device cuda --out bench_cuda.json         # seed configuration, ~8 min on one GPU
"""
import argparse, json, os, platform, shutil, sys, time, traceback
from pathlib import Path
import torch

from . import sections as S
from .report import section_ratios, format_section, table, errors, get
from .timing import Deadline, device_peak, max_rss_gb

SECTIONS = list(S.SECTIONS)  # in run order (see benchmarks/sections.py: later sections read earlier ones)


def _meta(args, cfg):
    m = dict(device=args.device, quick=args.quick, torch=torch.__version__, python=platform.python_version(),
             cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), platform=platform.platform(),
             started=time.strftime('%Y-%m-%d %H:%M:%S'), time_budget_s=cfg['total_budget_s'])
    try:
        import flowmatch; m['flowmatch'] = getattr(flowmatch, '__version__', '?')
    except ImportError: m['flowmatch'] = None
    if args.device == 'cuda':
        p = torch.cuda.get_device_properties(0)
        m.update(gpu=p.name, gpu_memory_gib=p.total_memory / 2**30, cuda=torch.version.cuda,
                 tf32_matmul=torch.backends.cuda.matmul.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)
    return m


def _run_section(name, ctx, report):
    t0 = time.perf_counter()
    try: out = S.SECTIONS[name](ctx, report)
    except Exception as e:
        out = dict(error=f'{type(e).__name__}: {e}', traceback=traceback.format_exc())
    out['section_s'] = time.perf_counter() - t0
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.run', description=__doc__.splitlines()[0])
    p.add_argument('--device', choices=['cpu', 'cuda'], required=True)
    p.add_argument('--out', required=True, help='JSON report to write')
    p.add_argument('--quick', action='store_true', help='smallest sizes and shortest timings (a smoke test)')
    p.add_argument('--only', default='', help=f'comma-separated subset of sections: {",".join(SECTIONS)}')
    p.add_argument('--peak-tflops', type=float, default=None, help='peak FLOP/s (in TFLOP/s) for MFU instead of the built-in one')
    p.add_argument('--threads', type=int, default=None, help='CPU threads for torch (default: torch\'s choice; 1 is steadier on a shared machine)')
    p.add_argument('--budget', type=float, default=None, help='time budget in seconds (default: 480 on cuda, 45 quick, 600 cpu)')
    args = p.parse_args(argv)
    only = [s for s in args.only.split(',') if s]
    bad = [s for s in only if s not in SECTIONS]
    if bad: p.error(f'unknown section(s) {bad}; choose from {SECTIONS}')
    if args.device == 'cuda':
        if not torch.cuda.is_available(): p.error('--device cuda: no CUDA device is visible to torch here; use --device cpu')
        torch.backends.cudnn.benchmark = True

    if args.threads: torch.set_num_threads(args.threads)
    cfg = S.settings(args.device, args.quick)
    if args.budget: cfg['total_budget_s'] = args.budget
    deadline = Deadline(cfg['total_budget_s'])
    t_start = time.perf_counter()
    report = dict(meta=_meta(args, cfg))
    print(f"flowmatch benchmarks on {report['meta'].get('gpu', platform.processor() or 'cpu')} ({args.device}"
          f"{', quick' if args.quick else ''}), torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    peak = device_peak(args.device, args.peak_tflops, budget_s=0.5 if args.quick else 2.0)
    report['peak'] = peak
    print(f"MFU is measured against {peak['flops'] / 1e12:.3g} TFLOP/s ({peak['source']})", flush=True)
    ctx = S.Context(args.device, args.quick, peak['flops'], deadline, cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in SECTIONS:
        if only and name not in only: report[name] = dict(skipped='not selected with --only', section_s=0.0)
        else: report[name] = _run_section(name, ctx, report)
        section_ratios(report, name)
        report['meta']['elapsed_s'] = time.perf_counter() - t_start
        out.write_text(json.dumps(report, indent=1))   # after every section: a run cut short still leaves its numbers
        print(format_section(report, name), flush=True)
    for folder in ctx.scratch.values(): shutil.rmtree(folder, ignore_errors=True)
    report['meta']['elapsed_s'] = time.perf_counter() - t_start
    report['meta']['process_max_rss_gib'] = max_rss_gb()
    report.setdefault('ratios', {})
    out.write_text(json.dumps(report, indent=1))
    print('\n== All ratios (also in the JSON under "ratios", with the paths of the two numbers)')
    print(table(['ratio', 'value'], [[k, f"{r['value']:.3f}x"] for k, r in report['ratios'].items()]) if report['ratios'] else '(none)')
    failed = errors(report)
    print(f"\ntotal {report['meta']['elapsed_s']:.1f} s; report written to {out}" + (f"; ERRORS in {failed}" if failed else ''))
    for path in failed: print(f'\n--- {path} ---\n{get(report, path + ".traceback")}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
