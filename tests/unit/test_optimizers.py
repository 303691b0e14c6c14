"""Each optimizer and activation trains; they differ where they should."""

import numpy as np
import pytest
import torch

from app.training.loop import TrainConfig, evaluate, train_local
from app.training.networks import NetworkConfig, initial_state


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = rng.integers(0, 3, size=600)
    features = centers[labels] + rng.normal(scale=0.6, size=(600, 2))
    return features.astype(np.float32), labels.astype(np.float32)


def fit(network: NetworkConfig, optimizer: str, lr: float, epochs: int = 5) -> dict:
    x, y = blobs()
    config = TrainConfig(
        task="classification", optimizer=optimizer, learning_rate=lr, batch_size=32,
        local_epochs=epochs,
    )  # fmt: skip
    result = train_local(
        network, initial_state(network, 0), x, y, config, seed=1, device=torch.device("cpu")
    )
    return {"state": result.state, "loss": result.loss}


LOGISTIC = NetworkConfig(type="logistic_regression", n_features=2, n_outputs=3)


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.5), ("momentum", 0.05), ("adam", 0.05)])
def test_every_optimizer_learns_separable_blobs(optimizer: str, lr: float) -> None:
    fitted = fit(LOGISTIC, optimizer, lr)
    x, y = blobs(seed=1)
    evaluation = evaluate(LOGISTIC, fitted["state"], x, y, "classification")
    assert evaluation is not None
    assert evaluation.metrics["accuracy"] >= 0.95
    assert evaluation.loss < np.log(3) / 2  # well below the 3-class chance loss


def test_momentum_and_plain_sgd_take_different_paths() -> None:
    sgd = fit(LOGISTIC, "sgd", 0.05, epochs=1)["state"]
    momentum = fit(LOGISTIC, "momentum", 0.05, epochs=1)["state"]
    assert not torch.equal(sgd["0.weight"], momentum["0.weight"])


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        fit(LOGISTIC, "lbfgs", 0.1)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_mlp_learns_with_each_activation(activation: str) -> None:
    network = NetworkConfig(
        type="mlp", n_features=2, n_outputs=3, hidden_layers=[16], activation=activation,
        dropout=0.1,
    )  # fmt: skip
    fitted = fit(network, "adam", 0.02)
    x, y = blobs(seed=2)
    evaluation = evaluate(network, fitted["state"], x, y, "classification")
    assert evaluation is not None and evaluation.metrics["accuracy"] >= 0.95
