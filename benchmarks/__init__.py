"""Benchmarks for nowramp_auth: ``python -m benchmarks`` (see ``--help``)."""
