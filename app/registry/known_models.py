"""What predict needs to know about a deployed model without asking SQL, so that a
model this process has served goes on answering while the database is unreachable.

A model's owner, features and artifact never change, and a deployed model is never
undeployed, so what was read once stays true; the only thing that can be missed is a
model deleted during the outage, which no route does.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from app.tables import RegisteredModel

# Entries are a few hundred bytes; the bound only stops a process that serves very many
# models from growing without limit.
MAX_KNOWN_MODELS = 4096


@dataclass(frozen=True)
class DeployedModel:
    id: str
    tenant_id: str
    artifact_key: str
    # Feature name -> dtype, in the model's order: what an Arrow body is read against.
    dtypes: dict[str, str]


class KnownModels:
    def __init__(self, size: int = MAX_KNOWN_MODELS) -> None:
        self._size = size
        self._items: OrderedDict[str, DeployedModel] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, model: RegisteredModel) -> DeployedModel:
        known = DeployedModel(
            id=model.id,
            tenant_id=model.tenant_id,
            artifact_key=model.artifact_key,
            dtypes={f["name"]: f["dtype"] for f in model.features},
        )
        with self._lock:
            self._items[model.id] = known
            self._items.move_to_end(model.id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return known

    def get(self, model_id: str, tenant_id: str) -> DeployedModel | None:
        with self._lock:
            known = self._items.get(model_id)
        if known is None or (tenant_id is not None and known.tenant_id != tenant_id):
            return None
        return known
