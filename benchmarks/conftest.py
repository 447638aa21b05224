"""Benchmarks run onnxfast and onnxruntime side by side in one process; the ratio is what counts
(absolute times on this shared machine drift). In CI they run with --benchmark-disable as tests."""
