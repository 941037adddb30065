"""The measuring engine: workers, the pool under test, sampling, and the run itself."""
