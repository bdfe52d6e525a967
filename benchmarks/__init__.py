"""Benchmarks of the VIN reader: per-stage cost, throughput, scaling, start-up and peers.

    python -m benchmarks.run --out runs/bench.json

See ``benchmarks/README.md`` for what is measured and how.
"""
