"""Raw scores of a set of binned rows under a growing ensemble, kept between rounds.

Every round a shard needs its rows' scores under the trees finished so far, and the
merge needs the validation rows'. Scoring from scratch costs every tree each round,
so a run of `n` trees scores ~n²/2 trees per row; kept, each tree is scored once.

The memo is keyed by the rows' content (for a memory-mapped part file, by the file's
identity) and checked against the trees it was built from, so a hit returns exactly
what scoring from scratch would: the same floats added in the same order (base
score, then tree by tree). A miss, or a process that never saw the rows, scores from
scratch. Nothing here changes what is computed.
"""

import hashlib
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from app.training.trees.ensemble import TreeEnsemble

T = TypeVar("T")

# Entries, not bytes: a worker holds a few shards and a merge one validation set.
MEMO_ENTRIES = 8


@dataclass
class _Scored:
    prefix: list[str]  # a digest per tree scored, in order
    raw: np.ndarray  # (rows, outputs)


_memo: OrderedDict[str, _Scored] = OrderedDict()
_evaluations: OrderedDict[str, object] = OrderedDict()
_lock = threading.Lock()


def _rows_key(binned: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{binned.shape} {binned.dtype}".encode())
    mapped = _mapped_file(binned)
    if mapped is not None:
        digest.update(mapped.encode())
    else:
        digest.update(np.ascontiguousarray(binned).data)
    return digest.hexdigest()


def _mapped_file(binned: np.ndarray) -> str | None:
    """Who a whole memory-mapped part file is, or None for any other array. Parts are
    written once and renamed into place, so path, inode, size and mtime name the
    bytes, without hashing megabytes every round."""
    if not isinstance(binned, np.memmap) or not isinstance(binned.base, mmap.mmap):
        # A slice of a map shares the map's filename and offset but not its rows.
        return None
    if binned.filename is None:
        return None
    try:
        stat = os.stat(binned.filename)
    except OSError:
        return None
    return f"{binned.filename} {binned.offset} {stat.st_ino} {stat.st_size} {stat.st_mtime_ns}"


def _tree_digests(ensemble: TreeEnsemble) -> list[str]:
    arrays = [
        ensemble.feature,
        ensemble.threshold_bin,
        ensemble.default_left,
        ensemble.value,
        ensemble.tree_output[:, None],
    ]
    return [
        hashlib.blake2b(b"".join(a[t].tobytes() for a in arrays), digest_size=16).hexdigest()
        for t in range(ensemble.n_trees)
    ]


def _memo_key(ensemble: TreeEnsemble, binned: np.ndarray) -> str:
    return _rows_key(binned) + ensemble.base_score.tobytes().hex()


def scores_of(ensemble: TreeEnsemble, binned: np.ndarray) -> np.ndarray:
    """`ensemble.predict_binned(binned)`, reusing the scores of the trees this process
    already added for these rows. The caller must not modify the result."""
    key = _memo_key(ensemble, binned)
    digests = _tree_digests(ensemble)
    with _lock:
        kept = _memo.get(key)
    start = 0
    raw: np.ndarray
    if kept is not None and kept.prefix == digests[: len(kept.prefix)]:
        start, raw = len(kept.prefix), kept.raw.copy()
    else:
        raw = np.tile(ensemble.base_score, (binned.shape[0], 1))
    if start < ensemble.n_trees:
        raw = ensemble.trees(start, ensemble.n_trees).add_binned(raw, binned)
    with _lock:
        _keep(_memo, key, _Scored(digests, raw))
    return raw


def evaluated(
    ensemble: TreeEnsemble,
    binned: np.ndarray,
    targets: np.ndarray,
    evaluate: Callable[[np.ndarray, np.ndarray], T],
    *,
    context: str,
) -> T:
    """`evaluate(scores_of(ensemble, binned), targets)`, kept for the same rows,
    targets, trees and `context` (what else `evaluate` depends on): the rounds inside
    a tree evaluate an ensemble that has not changed since it began."""
    key = "".join(
        [context, _memo_key(ensemble, binned), _rows_key(targets), *_tree_digests(ensemble)]
    )
    with _lock:
        if key in _evaluations:
            return cast(T, _evaluations[key])
    result = evaluate(scores_of(ensemble, binned), targets)
    with _lock:
        _keep(_evaluations, key, result)
    return result


def _keep(memo: "OrderedDict[str, Any]", key: str, value: object) -> None:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > MEMO_ENTRIES:
        memo.popitem(last=False)
