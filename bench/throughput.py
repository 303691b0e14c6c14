"""Samples per second of ``train_local`` against a bare torch loop, same run.

Run from the repository root:

    .venv/bin/python bench/throughput.py            # 200k x 50, 3 epochs, about 1 minute
    .venv/bin/python bench/throughput.py --quick    # 50k rows, 1 epoch

Both sides train the same network on the same float32 tensors with the same
batch size, optimizer, learning rate, number of epochs and torch threads. The
bare loop is the no-overhead baseline: one ``torch.randperm`` per epoch, ``index_select``
on the in-memory tensors, forward, loss, backward, step, nothing else. Each side
runs ``--repeats`` times alternately and the best time counts, which keeps
noise from the machine out of the ratio. ``train_local`` is measured twice:
on an in-memory array, and on the memory-mapped ``.npy`` file a worker reads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from app.training.loop import TrainConfig, train_local
from app.training.networks import NetworkConfig, build_network, initial_state

TARGET_RATIO = 0.9


def make_shard(n_rows: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    w = rng.standard_normal(n_features)
    y = (x @ w + rng.standard_normal(n_rows) > 0).astype(np.float32)
    return x, y


def bare_loop(
    network_config: NetworkConfig,
    state: dict[str, torch.Tensor],
    features: np.ndarray,
    targets: np.ndarray,
    config: TrainConfig,
    seed: int,
) -> None:
    """What a hand-written torch script would do: no bookkeeping at all."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = build_network(network_config)
    network.load_state_dict(state)
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    x, y = torch.from_numpy(features), torch.from_numpy(targets).long()
    n_rows = len(y)
    for _ in range(config.local_epochs):
        order = torch.randperm(n_rows, generator=generator)
        for start in range(0, n_rows, config.batch_size):
            batch = order[start : start + config.batch_size]
            # index_select: the fastest gather torch has (x[batch] is ~4x slower).
            loss = nn.functional.cross_entropy(
                network(x.index_select(0, batch)), y.index_select(0, batch)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(
    network_config: NetworkConfig,
    in_memory: tuple[np.ndarray, np.ndarray],
    mapped: tuple[np.ndarray, np.ndarray],
    config: TrainConfig,
    repeats: int,
) -> tuple[float, float, float]:
    """Samples per second: bare loop, train_local in memory, train_local on the memmap."""
    state = initial_state(network_config, 0)
    cpu = torch.device("cpu")
    features, targets = in_memory

    def ours(data: tuple[np.ndarray, np.ndarray]) -> object:
        return train_local(network_config, state, *data, config, seed=1, device=cpu)

    ours((features[:2000], targets[:2000]))  # warm up both code paths
    bare_loop(network_config, state, features[:2000], targets[:2000], config, seed=1)
    bare_times, our_times, mapped_times = [], [], []
    for _ in range(repeats):  # alternate, so that drift in the machine hits all three
        bare_times.append(
            seconds(lambda: bare_loop(network_config, state, features, targets, config, seed=1))
        )
        our_times.append(seconds(lambda: ours(in_memory)))
        mapped_times.append(seconds(lambda: ours(mapped)))
    samples = len(targets) * config.local_epochs
    return samples / min(bare_times), samples / min(our_times), samples / min(mapped_times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k rows, 1 epoch, 2 repeats")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.epochs, args.repeats = 50_000, 1, 2

    torch.set_num_threads(args.threads)
    features, targets = make_shard(args.rows, args.features)
    config = TrainConfig(
        task="classification",
        optimizer="adam",
        learning_rate=0.01,
        batch_size=args.batch_size,
        local_epochs=args.epochs,
    )
    networks = [
        ("logistic_regression", NetworkConfig("logistic_regression", args.features, 2)),
        ("mlp [256, 256]", NetworkConfig("mlp", args.features, 2, hidden_layers=[256, 256])),
    ]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); shard {args.rows} x "
        f"{args.features} float32, batch {args.batch_size}, adam, {args.epochs} epoch(s); "
        f"best of {args.repeats}"
    )
    print(
        f"| {'model':<20} | {'bare torch /s':>13} | {'train_local /s':>14} | {'ratio':>5} "
        f"| {'memmap /s':>10} | {'ratio':>5} |"
    )
    print(f"|{'-' * 22}|{'-' * 15}|{'-' * 16}|{'-' * 7}|{'-' * 12}|{'-' * 7}|")
    worst = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        # The worker's layout: features and target in one float32 .npy, memory-mapped.
        path = Path(tmp) / "shard.npy"
        np.save(path, np.column_stack([features, targets]))
        mapped = np.load(path, mmap_mode="r")
        mapped_x, mapped_y = mapped[:, :-1], mapped[:, -1]
        for name, network_config in networks:
            bare_rate, our_rate, mapped_rate = measure(
                network_config,
                (features, targets),
                (mapped_x, mapped_y),
                config,
                args.repeats,
            )
            ratio, mapped_ratio = our_rate / bare_rate, mapped_rate / bare_rate
            worst = min(worst, ratio)
            print(
                f"| {name:<20} | {bare_rate:>13,.0f} | {our_rate:>14,.0f} | {ratio:>5.2f} "
                f"| {mapped_rate:>10,.0f} | {mapped_ratio:>5.2f} |"
            )
            sys.stdout.flush()
    verdict = "met" if worst >= TARGET_RATIO else "NOT met"
    print(f"target train_local >= {TARGET_RATIO}x the bare loop (in memory): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
