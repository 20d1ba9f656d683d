"""The scripted model for loop tests now lives in `entropix_s1.testing` (benchmarks share it)."""

from entropix_s1.testing import WordTokenizer, scripted_model  # noqa: F401
