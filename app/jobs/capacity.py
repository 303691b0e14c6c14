"""The per-tenant cap on a model's size: `max_parameters`, weights and biases counted.

The input width of a network is the dataset's feature count after one-hot encoding,
known only once prepare has read the training rows. So the API refuses a spec whose
smallest possible network (one input feature, one output) is already over the limit,
which the hidden-to-hidden weights of an mlp decide, and prepare checks the full count.
"""

from app.errors import APIError
from app.jobs.spec import GradientBoostedTreesSpec, JobSpec
from app.tenancy.limits import Limits
from app.training.networks import NetworkConfig


def minimum_parameters(spec: JobSpec) -> int:
    """The fewest parameters any dataset could give this spec's model."""
    model = spec.model
    if isinstance(model, GradientBoostedTreesSpec):
        return 0
    hidden = list(model.hidden_layers) if model.type == "mlp" else []
    return NetworkConfig(
        type=model.type, n_features=1, n_outputs=1, hidden_layers=hidden
    ).parameter_count


def check_parameter_limit(spec: JobSpec, limits: Limits | None) -> None:
    """A 422 naming `model.hidden_layers` and the limit when the model cannot fit it."""
    model = spec.model
    # A tree model's size is bounded by its histograms instead (`tree_prep`).
    if limits is None or isinstance(model, GradientBoostedTreesSpec):
        return
    at_least = minimum_parameters(spec)
    if at_least > limits.max_parameters:
        raise APIError(
            422,
            "quota_exceeded",
            f"An mlp with hidden_layers {model.hidden_layers} has at least "
            f"{at_least:,} parameters whatever the dataset, above this account's "
            f"max_parameters of {limits.max_parameters:,}; use fewer or narrower layers.",
            "model.hidden_layers",
        )


def over_limit(network: NetworkConfig, max_parameters: int | None) -> str | None:
    """Why the full network breaks the limit (prepare's check), or None when it fits."""
    count = network.parameter_count
    if max_parameters is None or count <= max_parameters:
        return None
    field = "model.hidden_layers" if network.type == "mlp" else "model"
    return (
        f"{field}: the {network.type} has {count:,} parameters for this dataset "
        f"({network.n_features:,} input features after one-hot encoding, "
        f"{network.n_outputs:,} output(s)), above this account's max_parameters of "
        f"{max_parameters:,}"
    )
