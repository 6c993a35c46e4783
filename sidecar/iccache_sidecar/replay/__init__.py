"""The off-peak replay job: distil, expand and evict cached examples (``iccache replay``)."""
