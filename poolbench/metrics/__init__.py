"""Counting and latency histograms, fed by the workers and folded by the sampler."""
