"""Throughput benchmarks for flowmatch: `python -m benchmarks.run --device {cpu,cuda} --out FILE [--quick]`.

Not part of the installed `flowmatch` package (setup.py installs `flowmatch` and `flowmatch.*` only)."""
