"""glassnet.data: datasets, loaders and augmentation, on NumPy only.

Conventions: images are NumPy arrays in NCHW layout, uint8 as stored; the
:class:`DataLoader` hands out float32 batches (scaled to [0, 1], augmented, then
optionally normalised per channel) with int64 labels.

Quick start::

    from glassnet.data import load_dataset, DataLoader, transforms as T

    train = load_dataset("shapes", "train")            # 12000×1×28×28, generated
    test = load_dataset("fashion-mnist", "test")        # from disk or downloaded
    aug = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(28, padding=2)])
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0,
                        normalize="auto", transform=aug)
    for x, y in loader:   # x float32 (64, 1, 28, 28), y int64 (64,)
        ...
"""

from . import transforms
from .cifar import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
    load_cifar10,
    load_cifar100,
    read_cifar10_batch,
    read_cifar100_batch,
    write_cifar10_batch,
    write_cifar100_batch,
)
from .datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    Dataset,
    DatasetSpec,
    DatasetStatus,
    RemoteFile,
    available_datasets,
    cache_dir,
    dataset_status,
    format_status,
    load_dataset,
    locate_files,
    search_dirs,
    train_val_split,
)
from .download import download_file, sha256_file
from .errors import ChecksumError, DatasetError, DatasetNotFoundError, DownloadError
from .folder import (
    FolderLayout,
    ImageFolder,
    ImagePreprocessing,
    detect_mode,
    folder_layout,
    image_files,
    load_image,
    model_inputs,
    read_images,
)
from .idx import read_idx, write_idx
from .imagecache import image_cache_dir
from .loader import DataLoader, compute_mean_std
from .shapes import SHAPES_CLASSES, make_shapes, shapes_split

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR100_FINE_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "SHAPES_CLASSES",
    "ChecksumError",
    "DataLoader",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DatasetStatus",
    "DownloadError",
    "FolderLayout",
    "ImageFolder",
    "ImagePreprocessing",
    "RemoteFile",
    "available_datasets",
    "cache_dir",
    "compute_mean_std",
    "dataset_status",
    "download_file",
    "format_status",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "detect_mode",
    "folder_layout",
    "image_cache_dir",
    "image_files",
    "load_image",
    "model_inputs",
    "read_images",
    "locate_files",
    "make_shapes",
    "read_cifar10_batch",
    "read_cifar100_batch",
    "read_idx",
    "search_dirs",
    "sha256_file",
    "shapes_split",
    "train_val_split",
    "transforms",
    "write_cifar10_batch",
    "write_cifar100_batch",
    "write_idx",
]
