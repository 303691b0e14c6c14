"""Raw scores of a set of binned rows under a growing ensemble, kept between rounds.

Every round a shard needs its rows' scores under the trees finished so far, and the
merge needs the validation rows'. Scoring from scratch costs every tree each round,
so a run of `n` trees scores ~n²/2 trees per row; kept, each tree is scored once.

The memo is keyed by the rows' content and checked against the trees it was built
from, so a hit returns exactly what scoring from scratch would: the same floats
added in the same order (base score, then tree by tree). A miss, or a process that
never saw the rows, scores from scratch. Nothing here changes what is computed.
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from app.training.trees.ensemble import TreeEnsemble

# Entries, not bytes: a worker holds a few shards and a merge one validation set.
MEMO_ENTRIES = 8


@dataclass
class _Scored:
    prefix: list[str]  # a digest per tree scored, in order
    raw: np.ndarray  # (rows, outputs)


_memo: OrderedDict[str, _Scored] = OrderedDict()
_lock = threading.Lock()


def _rows_key(binned: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(binned.shape).encode())
    digest.update(np.ascontiguousarray(binned).data)
    return digest.hexdigest()


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


def scores_of(ensemble: TreeEnsemble, binned: np.ndarray) -> np.ndarray:
    """`ensemble.predict_binned(binned)`, reusing the scores of the trees this process
    already added for these rows. The caller must not modify the result."""
    key = _rows_key(binned) + ensemble.base_score.tobytes().hex()
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
        _memo[key] = _Scored(digests, raw)
        _memo.move_to_end(key)
        while len(_memo) > MEMO_ENTRIES:
            _memo.popitem(last=False)
    return raw
