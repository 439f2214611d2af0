"""The open-loop benchmark: ``python -m devtools.bench`` (what ``make bench`` runs).

It starts the real stack itself for each configuration and writes
docs/benchmarks.md (from report.md, a Django template) and docs/benchmarks.json;
``--size smoke`` runs every scenario at tiny counts for tests/test_bench_smoke.py.
"""
