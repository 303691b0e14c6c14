"""Histogram gradient-boosted trees, pure numpy: binning, gradient/hessian histograms,
split finding, level-by-level growth, the ensemble and its prediction, the losses, and
`policy.BoostedTreesPolicy`, which runs the growth one level per round over shards."""
