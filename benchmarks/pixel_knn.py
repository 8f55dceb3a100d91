"""The kNN monitor's protocol on raw pixels: a floor for SimCLR features.

    python -m benchmarks.pixel_knn

Fashion-MNIST test accuracy of the weighted kNN that SimCLR's monitor uses
(k=200, temperature 0.1, cosine similarity, a seeded 20,000-image bank of
the training split, as experiments/fashion_mnist_simclr.py) applied to raw
pixels in [0, 1], and to pixels centred on the bank's mean. Features that
do not beat these have not learnt much beyond the pixels. Saved to
benchmarks/results/pixel_knn_fashion_mnist.json.
"""

from __future__ import annotations

import numpy as np

from benchmarks import common
from jvision.data import sources
from jvision.evaluate import knn
from jvision.train import simclr

BANK = 20_000
K, TEMPERATURE = 200, 0.1


def main():
  train = sources.load("fashion_mnist", split="train", progress=False)
  test = sources.load("fashion_mnist", split="test", progress=False)
  bank = simclr.knn_bank(train, BANK, seed=0)
  pixels = bank.images.reshape(len(bank), -1).astype(np.float32) / 255
  queries = test.images.reshape(len(test), -1).astype(np.float32) / 255
  mean = pixels.mean(0)
  record = {}
  for name, b, q in (
    ("raw", pixels, queries),
    ("centred", pixels - mean, queries - mean),
  ):
    predicted = knn.knn_predict(
      b, bank.labels, q, k=K, temperature=TEMPERATURE, num_classes=10
    )
    record[f"{name}_pixels_knn_accuracy"] = float(
      np.mean(predicted == test.labels)
    )
    print(f"{name} pixels: {record[f'{name}_pixels_knn_accuracy']:.4f}")
  record["method"] = (
    f"weighted kNN (k={K}, temperature {TEMPERATURE}, cosine) with the "
    f"SimCLR monitor's seeded {BANK}-image bank, full test split"
  )
  print("saved", common.save("pixel_knn_fashion_mnist", record))


if __name__ == "__main__":
  main()
