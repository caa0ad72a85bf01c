"""Data-parallel training of one classifier with Ray Train (``TorchTrainer``, DDP).

For the big single models of the benchmark (the paper-scale source and mirror ResNet18s): N
workers each train on their slice of every global batch (:func:`train_classifier` with
``shard=(rank, N)``), DDP averages the gradients (gloo on CPUs, NCCL on GPUs), and rank 0 reports a
checkpoint (weights as safetensors, optimiser and data-order state) at every epoch boundary through
Ray Train's checkpointing, into ``<output_uri>.raytrain/``. A worker that dies restarts the group
from the latest checkpoint (``max_failures``); re-running the same command after a crash of the
driver resumes too. The single-process twin is ``nf-dist train`` without ``--workers``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from safetensors.torch import load_file, save_file

from nf_dist.config import from_dict, to_dict
from nf_dist.data import DataConfig, load_splits
from nf_dist.distributed.cluster import init_ray
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier, create_classifier
from nf_dist.models.checkpoint import save_classifier
from nf_dist.models.gan import GanTrainConfig, train_gan
from nf_dist.models.gan.train import DataParallel
from nf_dist.models.inference import accuracy
from nf_dist.models.training import LoopControl, TrainConfig, TrainProgress, train_classifier
from nf_dist.storage.uri import absolute_uri, is_remote

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkersConfig:
    """Data-parallel training on Ray Train workers (``num`` 0: train in this process).

    Attributes:
        num: number of workers (``--workers N``).
        cpus_per_worker: CPUs (and torch threads) per worker.
        use_gpu: one GPU per worker (NCCL); gloo on CPUs otherwise.
        max_failures: worker-group restarts from the latest checkpoint before giving up.
        address: Ray cluster address (None: ``RAY_ADDRESS`` or an embedded local Ray).
    """

    num: int = 0
    cpus_per_worker: int = 1
    use_gpu: bool = False
    max_failures: int = 2
    address: str | None = None

    def __post_init__(self) -> None:
        if self.num < 0 or self.cpus_per_worker < 1 or self.max_failures < 0:
            raise ConfigError(
                "workers: num >= 0, cpus_per_worker >= 1 and max_failures >= 0 are required"
            )


@dataclass(frozen=True)
class ClassifierRun:
    """One classifier trained from scratch by Ray Train workers (the train pipeline builds it)."""

    output_uri: str
    data: DataConfig
    data_half: Literal["a", "b"]
    arch: str
    width: float
    stem_stride: int
    seed: int
    train: TrainConfig
    workers: WorkersConfig


@dataclass(frozen=True)
class GanRun:
    """One GAN trained by Ray Train workers (the GAN pipeline builds it)."""

    output_uri: str
    data: DataConfig
    data_half: Literal["a", "b"]
    gan: GanTrainConfig = field(default_factory=GanTrainConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)


MODEL_FILE = "model.safetensors"
PROGRESS_FILE = "progress.pt"


def ray_train_storage(output_uri: str) -> tuple[str, Any, str]:
    """Where Ray Train keeps a run's checkpoints: ``(storage_path, filesystem, run name)``.

    Local outputs use an absolute folder beside the output; ``s3://`` outputs use a pyarrow S3
    filesystem (credentials from the standard AWS chain, ``AWS_ENDPOINT_URL`` honoured).
    """
    name = f"{Path(output_uri.rstrip('/')).name}.raytrain"
    if not is_remote(output_uri):
        return str(Path(output_uri).resolve().parent), None, name
    if not output_uri.startswith("s3://"):
        raise ConfigError(f"{output_uri}: Ray Train checkpoints support local paths and s3:// only")
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    filesystem = pyarrow.fs.S3FileSystem(
        endpoint_override=endpoint,
        scheme="http" if endpoint and endpoint.startswith("http:") else "https",
    )
    parent = output_uri[len("s3://") :].rstrip("/").rsplit("/", 1)[0]
    return parent, filesystem, name


def _save_checkpoint_dir(folder: str, model: torch.nn.Module, progress: TrainProgress) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(folder, MODEL_FILE))
    torch.save(
        {
            "step": progress.step,
            "rng_state": progress.rng_state,
            "optimizer_state": progress.optimizer_state,
            "losses": progress.losses,
        },
        os.path.join(folder, PROGRESS_FILE),
    )


def _load_checkpoint_dir(folder: str) -> tuple[dict[str, torch.Tensor], TrainProgress | None]:
    state = load_file(os.path.join(folder, MODEL_FILE))
    path = os.path.join(folder, PROGRESS_FILE)
    if not os.path.exists(path):
        return state, None
    # weights_only: plain tensors and containers, never code.
    raw = torch.load(path, weights_only=True)
    return state, TrainProgress(
        raw["step"], raw["rng_state"], raw["optimizer_state"], list(raw["losses"])
    )


def _trainer(worker: Any, config: ClassifierRun | GanRun) -> tuple[Any, str]:
    """A ``TorchTrainer`` for a job config with a ``workers`` section; returns it and its run name
    (the folder under the storage path that holds its checkpoints)."""
    workers = config.workers
    # Workers run in their own working directory: hand them absolute local paths.
    config = replace(
        config, data=config.data.absolute(), output_uri=absolute_uri(config.output_uri)
    )
    init_ray(workers.address)
    storage_path, filesystem, name = ray_train_storage(config.output_uri)
    trainer = TorchTrainer(
        worker,
        train_loop_config={
            "config": to_dict(config),
            "threads_per_worker": workers.cpus_per_worker,
        },
        torch_config=TorchConfig(backend="nccl" if workers.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers.num,
            use_gpu=workers.use_gpu,
            resources_per_worker={"CPU": workers.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=workers.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer, name


def _classifier_worker(loop_config: dict[str, Any]) -> None:  # pragma: no cover - in workers
    config = from_dict(ClassifierRun, loop_config["config"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(int(loop_config.get("threads_per_worker", 1)))
    half = load_splits(config.data, with_query=False).half(config.data_half)
    torch.manual_seed(config.seed)
    model = create_classifier(config.arch, half.num_classes, config.width, config.stem_stride)
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state, resume = _load_checkpoint_dir(folder)
        model.load_state_dict(state)
        logger.info("rank %d resumes at step %s", rank, resume.step if resume else "end")
    device = ray.train.torch.get_device()
    wrapped = ray.train.torch.prepare_model(model)

    def report(progress: TrainProgress, final: bool = False) -> None:
        metrics = {"step": progress.step, "loss": progress.losses[-1], "final": final}
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                _save_checkpoint_dir(folder, model, progress)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
            else:
                ray.train.report(metrics)

    if resume is not None and resume.step < 0:
        return
    result = train_classifier(
        wrapped,
        half,
        config.train,
        control=LoopControl(shard=(rank, world_size), resume=resume, on_epoch_end=report),
        device=str(device),
        progress=False,
        description=f"{config.arch}[rank {rank}]",
    )
    report(TrainProgress(-1, {}, {}, result.losses), final=True)


def train_classifier_on_ray(config: ClassifierRun) -> tuple[Classifier, float]:
    """Train ``config`` on ``config.workers`` Ray Train workers, save it like the
    single-process job; returns (model, test accuracy)."""
    trainer, name = _trainer(_classifier_worker, config)
    result = trainer.fit()
    if result.checkpoint is None:
        raise ConfigError(f"Ray Train run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        state, _ = _load_checkpoint_dir(folder)
    test = load_splits(config.data, with_query=False).test
    model = create_classifier(config.arch, test.num_classes, config.width, config.stem_stride)
    model.load_state_dict(state)
    model.eval()
    acc = accuracy(model, test)
    save_classifier(
        model,
        config.output_uri,
        train=to_dict(config.train),
        test_accuracy=acc,
        workers=config.workers.num,
        ray_train_run=name,
    )
    logger.info(
        "saved %s (test accuracy %.3f, %d workers)", config.output_uri, acc, config.workers.num
    )
    return model, acc


def average_gradients(module: torch.nn.Module) -> None:
    """All-reduce and average the gradients of ``module`` across the process group."""
    world_size = dist.get_world_size()
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world_size)


def _gan_worker(loop_config: dict[str, Any]) -> None:  # pragma: no cover - in workers
    config = from_dict(GanRun, loop_config["config"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(int(loop_config.get("threads_per_worker", 1)))
    half = load_splits(config.data, with_query=False).half(config.data_half)
    train_gan(
        half.images,
        half.labels,
        config.gan,
        config.output_uri,
        device=str(ray.train.torch.get_device()),
        progress=False,
        parallel=DataParallel(
            shard=(rank, world_size),
            grad_sync=average_gradients if world_size > 1 else None,
            on_checkpoint=lambda step, losses: ray.train.report({"step": step, **losses}),
        ),
    )


def train_gan_on_ray(config: GanRun) -> None:
    """Train the GAN of ``config`` on ``config.workers`` Ray Train workers with gradient
    averaging. Rank 0 writes the GAN's own resumable checkpoint at ``config.output_uri`` every
    ``gan.checkpoint_every`` steps; a restarted worker group (up to ``max_failures``) or a re-run
    resumes from it."""
    trainer, _ = _trainer(_gan_worker, config)
    trainer.fit()
