"""Local training on one shard and evaluation of a set of parameters."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.training.metrics import classification_metrics, regression_metrics
from app.training.networks import NetworkConfig, build_network

StateDict = dict[str, torch.Tensor]
EVAL_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class TrainConfig:
    task: str  # "classification" | "regression"
    optimizer: str = "adam"
    learning_rate: float = 0.01
    batch_size: int = 256
    local_epochs: int = 1
    l1: float = 0.0
    l2: float = 0.0


@dataclass(frozen=True)
class LocalResult:
    state: StateDict
    num_examples: int
    loss: float


@dataclass(frozen=True)
class Evaluation:
    loss: float
    metrics: dict[str, float]


def _make_optimizer(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def _loss_fn(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task == "classification":
        return nn.functional.cross_entropy(outputs, targets.long())
    return nn.functional.mse_loss(outputs.squeeze(-1), targets)


def _weights(network: nn.Module) -> list[nn.Parameter]:
    # Penalties apply to weight matrices, not biases, as in scikit-learn and H2O.
    return [p for p in network.parameters() if p.dim() > 1]


def train_local(
    network_config: NetworkConfig,
    global_state: StateDict,
    features: np.ndarray,
    targets: np.ndarray,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
) -> LocalResult:
    """Train `local_epochs` over one shard, starting from the global parameters.

    The optimizer starts fresh every round (local SGD): its state is not merged.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = build_network(network_config).to(device)
    network.load_state_dict(global_state)
    network.train()
    optimizer = _make_optimizer(config.optimizer, list(network.parameters()), config.learning_rate)
    n_rows = len(targets)
    total_loss, seen = 0.0, 0
    for _ in range(config.local_epochs):
        order = torch.randperm(n_rows, generator=generator).numpy()
        for start in range(0, n_rows, config.batch_size):
            # Sorted indices read a memory-mapped shard in file order.
            batch = np.sort(order[start : start + config.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(features[batch])).to(device)
            y = torch.from_numpy(np.ascontiguousarray(targets[batch])).to(device)
            loss = _loss_fn(config.task, network(x), y)
            total_loss += float(loss.detach()) * len(batch)
            seen += len(batch)
            if config.l2 > 0:
                loss = loss + 0.5 * config.l2 * sum((w**2).sum() for w in _weights(network))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if config.l1 > 0:
                _l1_proximal_step(network, config.learning_rate * config.l1)
    state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    return LocalResult(state=state, num_examples=n_rows, loss=total_loss / max(seen, 1))


@torch.no_grad()
def _l1_proximal_step(network: nn.Module, threshold: float) -> None:
    # Soft-thresholding gives exact zeros, which a subgradient of |w| never does.
    for weight in _weights(network):
        weight.copy_(torch.sign(weight) * torch.clamp(weight.abs() - threshold, min=0.0))


def predict_outputs(
    network_config: NetworkConfig,
    state: StateDict,
    features: np.ndarray,
    task: str,
    device: torch.device | None = None,
) -> np.ndarray:
    """Class probabilities (n, k) for classification, values (n,) for regression."""
    device = device or torch.device("cpu")
    network = build_network(network_config).to(device)
    network.load_state_dict(state)
    network.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(features), EVAL_BATCH_ROWS):
            x = torch.from_numpy(np.ascontiguousarray(features[start : start + EVAL_BATCH_ROWS]))
            out = network(x.to(device))
            out = torch.softmax(out, dim=-1) if task == "classification" else out.squeeze(-1)
            parts.append(out.double().cpu().numpy())
    if not parts:
        width = (network_config.n_outputs,) if task == "classification" else ()
        return np.empty((0, *width))
    return np.concatenate(parts)


def evaluate(
    network_config: NetworkConfig,
    state: StateDict,
    features: np.ndarray,
    targets: np.ndarray,
    task: str,
    *,
    target_scale: tuple[float, float] = (0.0, 1.0),
    device: torch.device | None = None,
) -> Evaluation | None:
    """Loss in training units and metrics in the target's own units; None without rows.

    Classification rows whose label was never seen in training (-1) are skipped.
    """
    if task == "classification":
        keep = targets >= 0
        features, targets = features[keep], targets[keep]
    if len(targets) == 0:
        return None
    outputs = predict_outputs(network_config, state, features, task, device)
    if task == "classification":
        labels = targets.astype(np.int64)
        metrics = classification_metrics(labels, outputs)
        return Evaluation(loss=metrics["log_loss"], metrics=metrics)
    mean, scale = target_scale
    loss = float(np.mean((outputs - targets) ** 2))
    return Evaluation(
        loss=loss, metrics=regression_metrics(targets * scale + mean, outputs * scale + mean)
    )
