#!/usr/bin/env bash
# Makes sure the embedded default dataset (Fashion-MNIST IDX files) exists.
set -euo pipefail
dir=${JVISION_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
missing=0
for f in $files; do [ -f "$dir/$f" ] || missing=1; done
[ $missing = 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "data: installing Debian package dataset-fashion-mnist"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  exit 0
fi
cat >&2 <<MSG
data: Fashion-MNIST files are missing from $dir. Run:
    sudo apt-get install dataset-fashion-mnist
or set JVISION_FASHION_MNIST_DIR to a folder holding
    $files
MSG
exit 1
