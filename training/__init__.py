"""Training pipeline for Zonkey: data, training loop, evaluation, baselines, benchmarks."""
