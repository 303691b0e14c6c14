"""Histogram gradient-boosted trees, pure numpy: binning, gradient/hessian histograms,
split finding, level-by-level growth, the ensemble and its prediction, the losses, and
`policy.BoostedTreesPolicy`, which runs the growth one level per round over shards."""

# The model type a job spec names, and a network config and an artifact carry.
MODEL_TYPE = "gradient_boosted_trees"
