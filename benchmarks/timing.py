"""Timing helpers: warm up, then time single steps until a time budget is spent (one step at a time, or several in turn); device
peaks; memory."""
import gc, resource, statistics, sys, time
import torch


def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()


class Deadline:
    "Seconds left of the run's time budget."
    def __init__(self, seconds): self.end = time.perf_counter() + seconds
    def left(self): return self.end - time.perf_counter()


def measure(step, # callable doing one unit of work (one training step, one sampler call, ...)
            device, # 'cpu' or 'cuda'
            warmup=2, # untimed calls first (allocator, autotuning, lazy init, compilation)
            budget_s=2.0, # stop timing once this much wall time has passed ...
            min_iters=3, # ... but never before this many timed calls
            max_iters=500):
    "Time `step` call by call (CUDA events on a GPU, so launches still overlap); per-call seconds: median, min, mean; iters."
    for _ in range(warmup): step()
    sync(device)
    cuda = torch.device(device).type == 'cuda'
    times, events = [], []
    start = time.perf_counter()
    while len(times) + len(events) < max_iters and (len(times) + len(events) < min_iters or time.perf_counter() - start < budget_s):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); step(); b.record(); events.append((a, b))
            if len(events) % 16 == 0: b.synchronize()   # keep the wall clock of the loop honest
        else:
            t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    sync(device)
    wall = time.perf_counter() - start
    if cuda: times = [a.elapsed_time(b) / 1e3 for a, b in events]
    return dict(median_s=statistics.median(times), min_s=min(times), mean_s=sum(times) / len(times), iters=len(times), wall_s=wall)


def measure_round_robin(steps, # {name: callable} doing one unit of work each
                        warmup=2, budget_s=2.0, min_iters=3, max_iters=500):
    "CPU: time several steps in turn, one call each per round, so that load from other jobs falls on all of them alike."
    for _ in range(warmup):
        for step in steps.values(): step()
    times, start = {k: [] for k in steps}, time.perf_counter()
    total = budget_s * len(steps)
    for rnd in range(max_iters):
        if rnd >= min_iters and time.perf_counter() - start >= total: break
        names = list(steps)[rnd % len(steps):] + list(steps)[:rnd % len(steps)]  # rotate who goes first
        for k in names:
            t0 = time.perf_counter(); steps[k](); times[k].append(time.perf_counter() - t0)
    return {k: dict(median_s=statistics.median(v), min_s=min(v), mean_s=sum(v) / len(v), iters=len(v)) for k, v in times.items()}


def fresh_memory(device):
    "Free what earlier measurements left behind and restart the peak-memory counter."
    gc.collect()
    if torch.device(device).type == 'cuda':
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()


def peak_memory_gb(device):
    "Peak GPU memory allocated by tensors since `fresh_memory` (None on CPU: see `max_rss_gb`)."
    return torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == 'cuda' else None


def max_rss_gb():
    "Largest resident set of this process so far, in GiB (Linux reports KiB, macOS bytes)."
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (2**30 if sys.platform == 'darwin' else 2**20)


# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s), matched against torch.cuda.get_device_name().
# Cards not listed fall back to the measured matmul rate (or pass --peak-tflops).
GPU_BF16_PEAKS = [('H200', 989e12), ('H100 PCIe', 756e12), ('H100 NVL', 835e12), ('H100', 989e12), ('A100', 312e12),
                  ('L40S', 362e12), ('L4', 121e12)]


def matmul_flops(device, dtype, n, budget_s=0.5):
    "Measured FLOP/s of an n x n x n matrix product in `dtype` (median call on a GPU, fastest call on a shared CPU)."
    a = torch.randn(n, n, device=device, dtype=dtype); b = torch.randn(n, n, device=device, dtype=dtype)
    r = measure(lambda: a @ b, device, warmup=2, budget_s=budget_s, min_iters=5)
    return 2 * n**3 / r['median_s' if torch.device(device).type == 'cuda' else 'min_s']


def device_peak(device, override_tflops=None, budget_s=0.5):
    "The peak FLOP/s that MFU is measured against, with where it came from."
    if override_tflops: return dict(flops=override_tflops * 1e12, source='--peak-tflops')
    if torch.device(device).type == 'cuda':
        name = torch.cuda.get_device_name()
        measured = matmul_flops(device, torch.bfloat16, 8192)
        for key, peak in GPU_BF16_PEAKS:
            if key in name:
                return dict(flops=peak, source=f'{name}: dense bf16 data-sheet peak', matmul_bf16_measured_flops=measured)
        return dict(flops=measured, source=f'{name}: measured 8192^3 bf16 matmul (not in the data-sheet table)',
                    matmul_bf16_measured_flops=measured)
    # 512^3 (~5 ms a call): short enough that the fastest of many calls escapes the other jobs on a shared machine
    measured = matmul_flops(device, torch.float32, 512, budget_s)
    return dict(flops=measured, source=f'measured 512^3 fp32 matmul on {torch.get_num_threads()} thread(s)',
                matmul_fp32_measured_flops=measured, matmul_bf16_measured_flops=matmul_flops(device, torch.bfloat16, 512, budget_s / 2))
