"""Check that ``train_local`` on CUDA gives the parameters it gives on CPU.

Run from the repository root on a machine with an NVIDIA GPU:

    .venv/bin/python bench/gpu_check.py

Exit status: 0 when every CUDA result matches the CPU one within the tolerance,
1 when one does not, 2 when there is no CUDA device (nothing was checked).

The same seed gives the same batches on both devices (the permutation is drawn
on a CPU generator), so the only differences are floating-point: GPU kernels
sum in another order. After a few hundred steps those differences stay around
1e-6; the tolerance below leaves room for that and is far below any change a
bug would make (a wrong batch, a skipped step, a wrong device for the targets).
Models without dropout only: dropout masks come from each device's own
generator and cannot match.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from app.training import loop
from app.training.loop import TrainConfig, train_local
from app.training.networks import NetworkConfig, initial_state

RTOL = 1e-4
ATOL = 1e-4


def make_shard(n_rows: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    logits = x @ rng.standard_normal((n_features, 3))
    return x, logits.argmax(axis=1).astype(np.float32)


def timed(run: object) -> tuple[loop.LocalResult, float]:
    assert callable(run)
    start = time.perf_counter()
    result = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> int:
    if not torch.cuda.is_available():
        print(
            "no CUDA device here: nothing was checked "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda})"
        )
        return 2
    # Full float32 matmuls on the GPU, as on the CPU (TF32 would round inputs to 10 bits).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(0)}")
    x, y = make_shard(50_000, 32)
    regression_y = (x[:, 0] - 2 * x[:, 1]).astype(np.float32)
    cases = [
        (
            "logistic_regression adam",
            NetworkConfig("logistic_regression", 32, 3),
            TrainConfig(task="classification", optimizer="adam", batch_size=256, l2=1e-4),
            y,
        ),
        (
            "mlp [128, 64] momentum",
            NetworkConfig("mlp", 32, 3, hidden_layers=[128, 64]),
            TrainConfig(task="classification", optimizer="momentum", batch_size=256),
            y,
        ),
        (
            "linear_regression sgd l1",
            NetworkConfig("linear_regression", 32, 1),
            TrainConfig(task="regression", optimizer="sgd", batch_size=256, l1=1e-3),
            regression_y,
        ),
    ]
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    failures = 0
    print(
        f"| {'case':<26} | {'cpu s':>6} | {'cuda s':>6} | {'max |diff|':>10} | "
        f"{'loss cpu':>9} | {'loss cuda':>9} | {'match':<5} |"
    )
    print(f"|{'-' * 28}|{'-' * 8}|{'-' * 8}|{'-' * 12}|{'-' * 11}|{'-' * 11}|{'-' * 7}|")
    for name, network, config, targets in cases:
        state = initial_state(network, 0)

        def run(device: torch.device, *, x=x, t=targets, n=network, c=config, s=state) -> object:
            return lambda: train_local(n, s, x, t, c, seed=7, device=device)

        train_local(network, state, x[:512], targets[:512], config, seed=7, device=cuda)  # warm-up
        on_cpu, cpu_s = timed(run(cpu))
        on_cuda, cuda_s = timed(run(cuda))
        # The same again with the shard copied one batch at a time, as for a
        # shard too large to keep on the device: it must give the same bits.
        resident_limit = loop.DEVICE_RESIDENT_BYTES
        loop.DEVICE_RESIDENT_BYTES = 0
        try:
            streamed, _ = timed(run(cuda))
        finally:
            loop.DEVICE_RESIDENT_BYTES = resident_limit
        diff = max(float((on_cpu.state[k] - on_cuda.state[k]).abs().max()) for k in on_cpu.state)
        ok = all(
            torch.allclose(on_cuda.state[k], on_cpu.state[k], rtol=RTOL, atol=ATOL)
            for k in on_cpu.state
        )
        ok = ok and abs(on_cpu.loss - on_cuda.loss) <= RTOL * abs(on_cpu.loss) + ATOL
        ok = ok and all(torch.equal(streamed.state[k], on_cuda.state[k]) for k in on_cuda.state)
        ok = ok and all(v.device.type == "cpu" for v in on_cuda.state.values())
        failures += not ok
        print(
            f"| {name:<26} | {cpu_s:>6.2f} | {cuda_s:>6.2f} | {diff:>10.2e} | "
            f"{on_cpu.loss:>9.5f} | {on_cuda.loss:>9.5f} | {'yes' if ok else 'NO':<5} |"
        )
    print(
        f"tolerance: torch.allclose(cuda, cpu, rtol={RTOL}, atol={ATOL}) per tensor, the same "
        "on the mean loss; the per-batch-copy CUDA path must equal the resident one bit for bit"
    )
    print("all match" if not failures else f"{failures} case(s) do NOT match")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
