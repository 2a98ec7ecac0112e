"""Study drivers behind the result tables of the method READMEs and docs/experiments/ (seed study, held-out
sweeps, diagnostics of trained models). Run from the repository root as ``python -m experiments.<name>``; the
user tools are in ``benchmarks/``."""
