"""FingerBench: model-stealing attacks and the benchmark of stolen and independent models."""
