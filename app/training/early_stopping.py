"""Which round to keep and when to stop, from the validation loss: shared by every
learner, so that `early_stopping` means the same for networks and for trees."""

from dataclasses import dataclass

from app.training.protocol import Decision, Evaluation, Progress


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once `patience` steps in a row failed to lower the best validation loss
    by more than `min_delta`. A step is a round for networks and a tree for trees."""

    patience: int
    min_delta: float = 0.0


def decide_on_validation(
    round_: int,
    evaluation: Evaluation | None,
    progress: Progress,
    *,
    last_round: int,
    early_stopping: EarlyStopping | None,
    rounds_per_step: int = 1,
) -> Decision:
    """Keep `round_` when it lowered the validation loss, else the best so far; finish
    at `last_round` or when early stopping runs out of patience."""
    # Without validation rows there is nothing to compare: the latest round is best.
    if evaluation is None:
        return Decision(round_, progress.best_val_loss, finish=round_ >= last_round)
    min_delta = early_stopping.min_delta if early_stopping else 0.0
    best = progress.best_val_loss
    if best is None or evaluation.loss < best - min_delta:
        return Decision(round_, evaluation.loss, finish=round_ >= last_round)
    best_round = progress.best_round or 0
    stalled = early_stopping is not None and (
        round_ - best_round >= early_stopping.patience * rounds_per_step
    )
    return Decision(best_round, best, finish=stalled or round_ >= last_round, early_stopped=stalled)
