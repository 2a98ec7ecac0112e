"""Study drivers behind the method READMEs' result tables (seed study, held-out sweeps, diagnostics of trained
models). Run from the repository root as ``python -m experiments.<name>``; the user tools are in ``benchmarks/``."""
