"""The last stage: score the kept round on the holdout, register the model, apply the gate."""

from sqlalchemy.orm import Session

from app.jobs.checkpoints import load_checkpoint, load_part
from app.jobs.events import record_event
from app.jobs.lifecycle import fail, transition
from app.jobs.repository import JobRepository
from app.jobs.spec import JobSpec
from app.models import RegisteredModel
from app.models.base import new_id
from app.registry.artifact import write_artifact
from app.registry.repository import ModelRepository
from app.storage import BlobStore
from app.training.loop import evaluate
from app.training.networks import NetworkConfig
from app.training.preprocessing import Preprocessor


def finalize_job(session: Session, store: BlobStore, job_id: str) -> bool:
    """Returns True when this call registered the model (False: nothing to do)."""
    job = JobRepository(session).get(job_id, for_update=True)
    if job is None or job.status != "running" or job.model_id is not None:
        return False
    assert job.plan is not None and job.task is not None
    spec = JobSpec.stored(job.spec)
    # Early stopping keeps the best round, not the last one trained.
    kept_round = job.best_round if job.best_round is not None else job.current_round
    state = load_checkpoint(store, job_id, kept_round)
    if state is None:
        fail(job, "checkpoint_lost", f"the checkpoint of round {kept_round} is missing")
        return False
    network = NetworkConfig.from_dict(job.plan["network"])
    preprocessor = Preprocessor.from_dict(job.plan["preprocessor"])
    features, targets = load_part(store, job.plan["holdout_key"])
    evaluation = evaluate(
        network,
        state,
        features,
        targets,
        job.task,
        target_scale=(preprocessor.target.mean, preprocessor.target.std),
    )
    metrics = evaluation.metrics if evaluation else {}
    unavailable = evaluation.unavailable if evaluation else {}
    if unavailable:
        listed = "; ".join(f"{name}: {why}" for name, why in unavailable.items())
        record_event(
            session,
            job_id,
            "metrics.unavailable",
            f"holdout metric(s) could not be computed: {listed}",
            level="warning",
            unavailable=unavailable,
        )

    gate = None
    status = "deployed"
    if spec.deploy_if is not None:
        value = metrics.get(spec.deploy_if.metric)
        missing = (
            unavailable.get(spec.deploy_if.metric)
            if evaluation is not None
            else "the holdout has no rows to score"
        )
        reason = spec.deploy_if.rejection(value, missing)
        gate = {
            **spec.deploy_if.model_dump(),
            "value": value,
            "passed": reason is None,
            "reason": reason,
        }
        status = "deployed" if reason is None else "rejected"

    model_id = new_id("mdl")
    artifact_key = f"models/{model_id}/model.safetensors"
    with store.temporary_path(artifact_key) as tmp:
        write_artifact(
            tmp,
            state=state,
            network=network,
            preprocessor=preprocessor,
            task=job.task,
            extra={"model_id": model_id, "job_id": job_id, "round": kept_round, "metrics": metrics},
        )
    ModelRepository(session, job.tenant_id).add(
        RegisteredModel(
            tenant_id=job.tenant_id,
            id=model_id,
            job_id=job_id,
            task=job.task,
            type=network.type,
            status=status,
            metrics=metrics,
            gate=gate,
            features=preprocessor.feature_schema,
            target=preprocessor.target.name,
            classes=preprocessor.target.classes,
            artifact_key=artifact_key,
        )
    )
    if gate is not None and gate["reason"] is not None:
        record_event(
            session,
            job_id,
            "model.rejected",
            f"model {model_id} not deployed: {gate['reason']}",
            level="warning",
            model_id=model_id,
        )
    job.model_id = model_id
    job.metrics = {"round": kept_round, "split": "holdout", **metrics}
    if unavailable:
        job.metrics["unavailable"] = unavailable
    transition(job, "succeeded")
    return True
