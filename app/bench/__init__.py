"""The worker's benchmark (`python bench/benchmark.py` from app/), a package of the repository's install."""
