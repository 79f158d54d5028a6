"""Write Fashion-MNIST as a folder of PNG files, one sub-folder per class: a real folder of images
to try ``glassnet train --data FOLDER`` on.

    python examples/fashion_folder.py /tmp/fashion-folder            # 200 per class to train, 100 to test
    glassnet train --data /tmp/fashion-folder --epochs 20

Layout: ``FOLDER/train/<class>/00000.png`` and ``FOLDER/test/<class>/00000.png`` (class names
with '/' get '_': ``T-shirt_top``). The images are the first ones of each class in the official
training and test splits (Debian's ``dataset-fashion-mnist``, or ``glassnet datasets fetch
fashion-mnist``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from glassnet.data import load_dataset


def write_split(split: str, out: Path, per_class: int) -> int:
    ds = load_dataset("fashion-mnist", split, download=False)
    n = 0
    for c, name in enumerate(ds.classes):
        folder = out / split / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(ds.labels == c)[:per_class]):
            Image.fromarray(ds.images[i, 0]).save(folder / f"{k:05d}.png")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=200, help="training images per class")
    ap.add_argument("--test", type=int, default=100, help="test images per class")
    args = ap.parse_args()
    n_train = write_split("train", args.out, args.train)
    n_test = write_split("test", args.out, args.test)
    print(f"wrote {n_train} training and {n_test} test images to {args.out}/train and {args.out}/test")


if __name__ == "__main__":
    main()
