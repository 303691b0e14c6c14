"""Histogram gradient-boosted trees, the pure parts: binning, gradient/hessian
histograms and split finding. Pure numpy; the round policy that runs them level by
level over shards builds on these (issue 16)."""
