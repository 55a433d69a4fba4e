"""Cargobay's benchmark against CNCF Distribution: `python -m bench.run` (see README.md)."""
