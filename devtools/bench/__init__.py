"""The benchmark suite: ``python -m devtools.bench`` (what ``make bench`` runs).

It starts the real stack itself (a private Redis, an aiosmtpd SMTP sink, a
SQLite database in a temp dir, a Celery worker, daphne), runs the scenarios of
docs/benchmarks.md against 127.0.0.1 only, each bounded in count and time, and
writes the report. ``--size smoke`` runs every scenario at tiny sizes: the test
suite does that (tests/test_bench_smoke.py) so the bench cannot rot.
"""
