"""Tests for jvision/data/manifest.py: audit manifests as a training source.

Folder manifests are checked on small PNG folders and zips written to
tmp_path, array manifests on the shared MNIST IDX files; one test trains a
few steps of the tiny MNIST run through `data.manifest`.
"""

import json
import logging
import zipfile

import numpy as np
import pytest
from helpers import CIFAR_NAMES, SHARED_DATA, tiny_config

from jvision import data as jd
from jvision import workdir
from jvision.audit.findings import ManifestEntry, write_manifest
from jvision.data import manifest
from jvision.data.dataset import DataError
from jvision.data.from_config import load_split
from jvision.train import defaults, setup, supervised

pytestmark = pytest.mark.usefixtures("data_cache")

MNIST = f"idx:{SHARED_DATA / 'mnist'}"
# name -> pixel value; the test leaves out train/cat/1.png and test/dog/y.png.
PETS = {
  "train/cat/0.png": 0,
  "train/cat/1.png": 10,
  "train/cat/2.png": 20,
  "train/dog/a.png": 30,
  "train/dog/b.png": 40,
  "test/cat/x.png": 50,
  "test/dog/y.png": 60,
}
LISTED = (
  "train/cat/0.png",
  "train/cat/2.png",
  "train/dog/a.png",
  "train/dog/b.png",
  "test/cat/x.png",
)


def _write(path, records) -> str:
  """Writes dicts (or raw strings) as lines; returns the path as str."""
  lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
  path.write_text("".join(line + "\n" for line in lines))
  return str(path)


def _row(path, label=0, cls="cat", split="train", source="mnist") -> dict:
  return {
    "source": source,
    "path": path,
    "split": split,
    "label": label,
    "class": cls,
  }


def _pets_manifest(out, source: str, prefix: str = "") -> str:
  """The audit's writer over LISTED (cat 0, dog 1), relabelling nothing."""
  entries = [
    ManifestEntry(
      source=source,
      path=prefix + name,
      split=name.split("/")[0],
      label=int(name.split("/")[1] == "dog"),
      class_name=name.split("/")[1],
    )
    for name in reversed(LISTED)  # load order must not follow file order
  ]
  write_manifest(str(out), entries)
  return str(out)


def _pets_files(imgs) -> dict:
  return {name: imgs.png(imgs.solid(value)) for name, value in PETS.items()}


@pytest.mark.parametrize("layout", ["dir", "zip"])
def test_folder_manifest_round_trip(tmp_path, imgs, layout):
  if layout == "dir":
    root, prefix = tmp_path / "pets", ""
    imgs.write_files(root, _pets_files(imgs))
  else:  # A wrapper folder: manifest paths are paths inside the zip.
    root, prefix = tmp_path / "pets.zip", "pets/"
    files = _pets_files(imgs)
    imgs.write_zip(root, {prefix + k: v for k, v in files.items()})
  path = _pets_manifest(tmp_path / "manifest.jsonl", f"folder:{root}", prefix)
  train = manifest.load_manifest(path, "train", progress=False)
  assert train.ids.tolist() == [prefix + n for n in LISTED[:4]]
  assert train.labels.tolist() == [0, 0, 1, 1]
  assert train.class_names == ("cat", "dog")
  assert train.images.shape == (4, 8, 8, 3) and train.skipped == ()
  assert train.images[:, 0, 0, 0].tolist() == [0, 20, 30, 40]
  assert (train.images == train.images[:, :1, :1, :1]).all()  # solid
  test = manifest.load_manifest(path, "test", progress=False)
  assert test.ids.tolist() == [prefix + "test/cat/x.png"]
  assert test.labels.tolist() == [0] and test.class_names == ("cat", "dog")
  assert test.images[:, 3, 5].tolist() == [[50, 50, 50]]


def test_folder_manifest_resizes_converts_and_caches(
  tmp_path, imgs, data_cache, caplog
):
  root = tmp_path / "pets"
  imgs.write_files(root, _pets_files(imgs))
  path = _pets_manifest(tmp_path / "m.jsonl", f"folder:{root}")
  options = dict(image_size=4, channels=1, progress=False)
  first = manifest.load_manifest(path, "train", **options)
  assert first.images.shape == (4, 4, 4, 1)
  assert first.images[:, 0, 0, 0].tolist() == [0, 20, 30, 40]
  assert len(list(data_cache.glob("*.npz"))) == 1
  with caplog.at_level(logging.INFO):
    again = manifest.load_manifest(path, "train", **options)
  assert "from cache" in caplog.text
  np.testing.assert_array_equal(again.images, first.images)
  assert again.ids.tolist() == first.ids.tolist()
  manifest.load_manifest(path, "train", max_per_class=1, **options)
  assert len(list(data_cache.glob("*.npz"))) == 2  # other rows, other key


def test_undecodable_listed_files_are_skipped_and_logged(
  tmp_path, imgs, caplog
):
  root = tmp_path / "pets"
  files = _pets_files(imgs)
  files["train/dog/a.png"] = files["train/dog/a.png"][:40]  # truncated
  imgs.write_files(root, files)
  path = _pets_manifest(tmp_path / "m.jsonl", f"folder:{root}")
  with caplog.at_level(logging.WARNING):
    ds = manifest.load_manifest(path, "train", progress=False)
  assert ds.ids.tolist() == ["train/cat/0.png", "train/cat/2.png"] + [
    "train/dog/b.png"
  ]
  assert ds.labels.tolist() == [0, 0, 1]
  assert [p for p, _ in ds.skipped] == ["train/dog/a.png"]
  assert "skipped 1 unreadable image(s)" in caplog.text
  assert "train/dog/a.png" in caplog.text


def test_listed_files_the_folder_lacks_are_an_error(tmp_path, imgs):
  root = tmp_path / "pets"
  imgs.write_files(root, _pets_files(imgs))
  path = _pets_manifest(tmp_path / "m.jsonl", f"folder:{root}")
  (root / "train" / "cat" / "2.png").unlink()
  with pytest.raises(
    DataError, match=r"1 file\(s\) .*'train/cat/2.png' \(line 4\)"
  ):
    manifest.load_manifest(path, "train", progress=False, use_cache=False)
  with pytest.raises(DataError, match=r"m.jsonl: folder:.*nope does not exist"):
    manifest.load_manifest(
      _write(tmp_path / "m.jsonl", [_row("a.png", source="folder:/nope")]),
      "train",
    )


def test_idx_manifest_selects_ids_of_both_source_splits(tmp_path):
  source = {s: jd.load(MNIST, s, progress=False) for s in ("train", "test")}

  def row(example_id, split):  # the source's label, named by its digit
    label = int(source[example_id[:-7]].labels[int(example_id[-6:])])
    return _row(example_id, label, str(label), split, MNIST)

  rows = [
    row("train/000007", "train"),
    row("test/000003", "train"),  # the id of a source test image
    row("train/000000", "train"),
    row("test/000001", "test"),
  ]
  path = _write(tmp_path / "m.jsonl", rows)
  ds = manifest.load_manifest(path, "train", progress=False)
  assert ds.ids.tolist() == ["test/000003", "train/000000", "train/000007"]
  np.testing.assert_array_equal(ds.images[0], source["test"].images[3])
  np.testing.assert_array_equal(ds.images[1:], source["train"].images[[0, 7]])
  assert ds.labels.tolist() == [0, 5, 3]  # MNIST's labels of those ids
  assert ds.class_names == tuple(
    str(i) if i in (0, 2, 3, 5) else manifest.placeholder_name(i)
    for i in range(6)
  )
  resized = manifest.load_manifest(path, "test", image_size=8, channels=3)
  assert resized.images.shape == (1, 8, 8, 3)
  assert resized.labels.tolist() == [2]


def _cifar_rows(source: str) -> list[dict]:
  """Two test images of each of the first three CIFAR-10 classes."""
  return [
    _row(f"test/{name}/{i:04d}.jpg", label, name, "test", source)
    for label, name in enumerate(CIFAR_NAMES[:3])
    for i in (0, 7)
  ]


def test_folder_manifest_on_the_cifar_zip_decodes_only_listed_files(
  tmp_path, shared_data
):
  zip_path = shared_data / "cifar10_q75" / "cifar10_q75.zip"
  rows = _cifar_rows(f"folder:{zip_path}")
  ds = manifest.load_manifest(
    _write(tmp_path / "m.jsonl", rows), "test", progress=False
  )
  assert ds.ids.tolist() == [r["path"] for r in rows]
  assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
  assert ds.class_names == CIFAR_NAMES[:3]
  with zipfile.ZipFile(zip_path) as archive:
    expected = [
      jd.decode_image(archive.read(r["path"]), path=r["path"]) for r in rows
    ]
  np.testing.assert_array_equal(ds.images, np.stack(expected))


def test_builtin_cifar10_manifest_uses_folder_ids(tmp_path, shared_data):
  # cifar10 resolves to the shared zip, whose ids are relative paths.
  rows = _cifar_rows("cifar10")
  ds = manifest.load_manifest(
    _write(tmp_path / "m.jsonl", rows), "test", progress=False
  )
  source = jd.load("cifar10", "test", progress=False)
  index = {str(key): i for i, key in enumerate(source.ids)}
  take = [index[r["path"]] for r in rows]
  np.testing.assert_array_equal(ds.images, source.images[take])
  assert ds.labels.tolist() == source.labels[take].tolist()


def test_manifest_labels_win_and_unused_ids_get_placeholders(tmp_path):
  rows = [
    _row("train/000000", 0, "zero", source=MNIST),  # MNIST says 5
    _row("train/000001", 2, "two", source=MNIST),
  ]
  ds = manifest.load_manifest(_write(tmp_path / "m.jsonl", rows), "train")
  assert ds.labels.tolist() == [0, 2]
  assert ds.class_names == ("zero", manifest.placeholder_name(1), "two")
  assert ds.class_names[1] == "<label 1: not in manifest>"


@pytest.mark.parametrize(
  "path, searched",
  [
    ("train/999999", r"\['train'\]"),
    ("val/000001", r"\['train', 'test'\]"),  # names no split: search all
    ("000001", r"\['train', 'test'\]"),
  ],
  ids=["no-such-index", "no-such-split", "no-split"],
)
def test_array_ids_the_source_lacks_are_an_error(tmp_path, path, searched):
  rows = [_row("train/000000", source=MNIST), _row(path, source=MNIST)]
  message = (
    rf"1 id\(s\) that idx:.* does not have in split\(s\) {searched} \(its "
    rf"ids look like 'train/000000'\): '{path}' \(line 2\)"
  )
  with pytest.raises(DataError, match=message):
    manifest.load_manifest(_write(tmp_path / "m.jsonl", rows), "train")


GOOD = _row("train/000000")
BAD_LINES = [
  ("{not json", r"m.jsonl:2: not valid JSON"),
  ("[1, 2]", r"m.jsonl:2: expected a JSON object, got list"),
  (
    {k: v for k, v in GOOD.items() if k != "class"},
    r"m.jsonl:2: missing key\(s\) \['class'\]",
  ),
  ({**GOOD, "label": "3"}, r"m.jsonl:2: 'label' must be an integer >= 0"),
  ({**GOOD, "label": True}, r"m.jsonl:2: 'label' must be an integer"),
  ({**GOOD, "label": -1}, r"m.jsonl:2: 'label' must be an integer >= 0"),
  ({**GOOD, "path": ""}, r"m.jsonl:2: 'path' must be a non-empty string"),
  ({**GOOD, "split": 1}, r"m.jsonl:2: 'split' must be a non-empty string"),
  ({**GOOD, "path": "/etc/a.png"}, r"m.jsonl:2: path '/etc/a.png' must be"),
  ({**GOOD, "path": "a/../../b.png"}, r"m.jsonl:2: path .* no '\.\.'"),
  (
    {**GOOD, "source": "fashion_mnist"},
    r"m.jsonl:2: source 'fashion_mnist' differs from 'mnist' on line 1",
  ),
  (GOOD, r"m.jsonl:2: path 'train/000000' is already listed on line 1"),
  (
    {**GOOD, "path": "train/000001", "class": "dog"},
    r"m.jsonl:2: label 0 is class 'dog' but line 1 gives it class 'cat'",
  ),
  (
    {**GOOD, "path": "train/000001", "label": 1},
    r"m.jsonl:2: class 'cat' has label 1 but line 1 gives it label 0",
  ),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_invalid_lines_name_file_line_and_problem(tmp_path, line, message):
  path = _write(tmp_path / "m.jsonl", [GOOD, line])
  with pytest.raises(DataError, match=message):
    manifest.read_manifest(path)


def test_bad_files_and_empty_splits(tmp_path):
  with pytest.raises(DataError, match=r"m.jsonl:1: bad source: unknown"):
    manifest.read_manifest(
      _write(tmp_path / "m.jsonl", [_row("a", source="x")])
    )
  with pytest.raises(DataError, match=r"holds no examples"):
    manifest.read_manifest(_write(tmp_path / "m.jsonl", ["", "  "]))
  with pytest.raises(DataError, match=r"cannot read manifest .*absent"):
    manifest.read_manifest(str(tmp_path / "absent.jsonl"))
  rows = [GOOD, _row("test/000000", split="test"), _row("v/0", split="val")]
  path = _write(tmp_path / "m.jsonl", rows)
  assert manifest.read_manifest(path).splits == ("train", "val", "test")
  with pytest.raises(
    DataError,
    match=r"no rows for split 'eval'; its splits are \['train', 'val', "
    r"'test'\]",
  ):
    manifest.load_manifest(path, "eval")


def test_config_key_and_old_workdirs():
  config = defaults.supervised_config()
  assert "manifest" in config.data and config.data.manifest is None
  new = config.to_dict()
  old = json.loads(json.dumps(new))
  del old["data"]["manifest"]  # a config.json written before the key
  assert workdir.config_differences(old, new) == []
  new["data"]["manifest"] = "/out/manifest.jsonl"
  assert workdir.config_differences(old, new) == [
    "data.manifest: None -> '/out/manifest.jsonl'"
  ]


def _mnist_manifest(path, n_train: int, n_test: int) -> tuple[str, list]:
  """The first n ids of MNIST train and test, labels from the source."""
  train = jd.load(MNIST, "train", progress=False)
  test = jd.load(MNIST, "test", progress=False)
  rows = [
    _row(str(src.ids[i]), int(src.labels[i]), str(src.labels[i]), s, MNIST)
    for src, s, n in ((train, "train", n_train), (test, "test", n_test))
    for i in range(n)
  ]
  return _write(path, rows), rows


def test_training_reads_exactly_the_manifest(tmp_path, monkeypatch, caplog):
  path, rows = _mnist_manifest(tmp_path / "manifest.jsonl", 40, 24)
  config = tiny_config(**{"data.manifest": path, "data.max_per_class": None})
  runs = []
  prepare = setup.prepare_run
  monkeypatch.setattr(
    setup, "prepare_run", lambda *a: runs.append(prepare(*a)) or runs[-1]
  )
  with caplog.at_level(logging.INFO):
    result = supervised.train_and_evaluate(config, str(tmp_path / "wd"))
  assert "data.manifest=" in caplog.text and "data.name='mnist'" in caplog.text
  (run,) = runs
  assert run.train.ids.tolist() == [r["path"] for r in rows[:40]]
  assert run.eval.ids.tolist() == [r["path"] for r in rows[40:]]
  assert run.train.labels.tolist() == [r["label"] for r in rows[:40]]
  assert run.train.num_classes == 10
  assert np.isfinite(result["train"]["loss"])
  assert result["eval"]["accuracy"] * 24 == pytest.approx(
    round(result["eval"]["accuracy"] * 24)
  )
  recorded = json.loads((tmp_path / "wd" / "config.json").read_text())
  assert recorded["config"]["data"]["manifest"] == path
  # max_per_class still applies, to the manifest's rows.
  capped = load_split(
    tiny_config(**{"data.manifest": path, "data.max_per_class": 2}), "train"
  )
  counts = np.bincount([r["label"] for r in rows[:40]], minlength=10)
  assert len(capped) == np.minimum(counts, 2).sum() < 40
