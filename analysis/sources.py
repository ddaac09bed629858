"""Where the analyses get their networks and data from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runtime.errors import DcganError
from runtime.generator import Generator as RuntimeGenerator
from runtime.manifest import MANIFEST_NAME
from train.data import ImageDataset, open_dataset, to_unit_range
from train.models import DiscriminatorNet, build_models


class AnalysisError(DcganError):
    """Bad input to an analysis: the message says what is wrong and what to do."""


def open_generator(source: Path, workdir: Path) -> RuntimeGenerator:
    """A runtime Generator from an artifact directory, or from a checkpoint (exported on the
    fly into `workdir`, with the export stage's BN recalibration and verification)."""
    source = Path(source)
    if source.is_dir() and (source / MANIFEST_NAME).exists():
        return RuntimeGenerator.load(source, backend="ort-cpu")
    if not source.is_file():
        raise AnalysisError(f"{source} is neither an artifact directory nor a checkpoint — pass "
                            "what dcgan-export or dcgan-train wrote")
    from export.artifact import ExportOptions, export_artifact

    out = Path(workdir) / "artifact"
    export_artifact(source, out, ExportOptions(format="onnx"))
    return RuntimeGenerator.load(out, backend="ort-cpu")


def load_discriminator(checkpoint: Path) -> tuple[DiscriminatorNet, object]:
    """D (eval mode) and the model config from a dcgan-train checkpoint."""
    from export.load import load_for_export

    loaded = load_for_export(checkpoint)
    if loaded.discriminator is None:
        raise AnalysisError(f"{checkpoint} holds no discriminator ({loaded.kind} generator only) — "
                            "this analysis needs a dcgan-train checkpoint")
    return loaded.discriminator.eval(), loaded.config


def random_discriminator(cfg, seed: int = 0) -> DiscriminatorNet:
    """A freshly initialised D (the paper's init): the baseline the trained D is compared with."""
    torch.manual_seed(seed)
    return build_models(cfg)[1].eval()


def load_images(spec: str, nc: int, indices: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 (N, 64, 64, nc) images, labels (-1 where none) and class names from a --data spec;
    all of them, or those at `indices`."""
    dataset: ImageDataset = open_dataset(spec, nc=nc)
    idx = np.arange(len(dataset)) if indices is None else indices
    if len(idx) and int(np.max(idx)) >= len(dataset):
        raise AnalysisError(f"--data {spec} has {len(dataset)} images, fewer than asked for")
    items = [dataset[int(i)] for i in idx]
    if not items:
        return np.zeros((0, 64, 64, nc), np.uint8), np.zeros(0, np.int64), list(dataset.classes)
    return (np.stack([im for im, _ in items]), np.array([lb for _, lb in items]),
            list(dataset.classes))


def per_class_sample(spec: str, nc: int, per_class: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`per_class` images of every class, drawn in a seeded random order (labelled data only)."""
    dataset: ImageDataset = open_dataset(spec, nc=nc)
    if not dataset.classes:
        raise AnalysisError(f"--data {spec} has no class labels — use shapes or a folder with one "
                            "subfolder per class")
    taken: dict[int, list] = {c: [] for c in range(len(dataset.classes))}
    for i in np.random.default_rng(seed).permutation(len(dataset)):
        image, label = dataset[int(i)]
        if len(taken[label]) < per_class:
            taken[label].append(image)
            if all(len(v) == per_class for v in taken.values()):
                break
    short = {dataset.classes[c]: len(v) for c, v in taken.items() if len(v) < per_class}
    if short:
        raise AnalysisError(f"not enough images per class for {per_class} each (have {short}) — "
                            "lower --labels-per-class or --test-per-class")
    images = np.stack([im for c in sorted(taken) for im in taken[c]])
    labels = np.repeat(np.arange(len(taken)), per_class)
    return images, labels, list(dataset.classes)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (the training scaling)."""
    return to_unit_range(torch.from_numpy(images).permute(0, 3, 1, 2))
