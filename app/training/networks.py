"""The model zoo. Only layers without running buffers: a merge averages
parameters, and averaging BatchNorm statistics or integer counters breaks."""

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
MODEL_TYPES = ("linear_regression", "logistic_regression", "mlp")


@dataclass(frozen=True)
class NetworkConfig:
    type: str
    n_features: int
    n_outputs: int
    hidden_layers: list[int] = field(default_factory=list)
    activation: str = "relu"
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NetworkConfig":
        return cls(**data)

    @property
    def parameter_count(self) -> int:
        """Weights and biases of the network `build_network` makes, without building it."""
        hidden = self.hidden_layers if self.type == "mlp" else []
        widths = [self.n_features, *hidden, self.n_outputs]
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(widths))


def build_network(config: NetworkConfig) -> nn.Module:
    if config.type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {config.type!r}")
    if config.type != "mlp":
        return nn.Sequential(nn.Linear(config.n_features, config.n_outputs))
    layers: list[nn.Module] = []
    width = config.n_features
    for hidden in config.hidden_layers:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[config.activation]()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = hidden
    layers.append(nn.Linear(width, config.n_outputs))
    return nn.Sequential(*layers)


def initial_state(config: NetworkConfig, seed: int) -> dict[str, torch.Tensor]:
    """Round 0's global parameters, the same for every shard."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        network = build_network(config)
        if config.type != "mlp":
            # A linear model starts at zero, as scikit-learn's solvers do.
            for parameter in network.parameters():
                nn.init.zeros_(parameter)
        return {k: v.detach().clone() for k, v in network.state_dict().items()}
    finally:
        torch.random.set_rng_state(generator_state)
