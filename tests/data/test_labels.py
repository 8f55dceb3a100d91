"""Tests for jvision/data/labels.py: built-in specs, validation, matching."""

import json

import pytest
from helpers import CIFAR_NAMES, FASHION_NAMES

from jvision.data import labels
from jvision.data.dataset import DataError


def _spec(classes, **top):
  return {"name": "toy", "classes": classes, **top}


def _write(tmp_path, data) -> str:
  path = tmp_path / "labels.json"
  path.write_text(json.dumps(data))
  return str(path)


GOOD_CLASSES = [
  {"id": 1, "name": "dog", "description": "a dog", "aliases": ["Dog"]},
  {"id": 0, "name": "cat", "aliases": ["kitty", "Cat"]},
]


def test_load_sorts_classes_by_id(tmp_path):
  spec = labels.load_label_spec(
    _write(tmp_path, _spec(GOOD_CLASSES, guidelines="be careful"))
  )
  assert spec.class_names == ("cat", "dog")
  assert spec.classes[1] == labels.ClassInfo(1, "dog", "a dog", ("Dog",))
  assert spec.guidelines == "be careful" and spec.num_classes == 2


def test_builtin_specs():
  fashion = labels.builtin_label_spec("fashion_mnist")
  assert fashion.class_names == FASHION_NAMES
  assert all(len(c.description) > 20 for c in fashion.classes)
  assert "T-shirt/top" in fashion.classes[0].aliases
  assert "Ankle boot" in fashion.classes[9].aliases
  assert fashion.guidelines
  mnist = labels.builtin_label_spec("mnist")
  assert mnist.class_names == tuple("0123456789")
  assert mnist.classes[9].aliases == ("nine",)
  cifar = labels.builtin_label_spec("cifar10")
  assert cifar.class_names == CIFAR_NAMES
  assert all(c.description for c in cifar.classes) and cifar.guidelines
  with pytest.raises(DataError, match="no built-in label spec 'imagenet'"):
    labels.builtin_label_spec("imagenet")


@pytest.mark.parametrize(
  "data, message",
  [
    (
      _spec([{"id": 0, "name": "a"}, {"id": 2, "name": "b"}]),
      r"ids must run 0..1 without gaps; missing ids \[1\]",
    ),
    (
      _spec([{"id": 0, "name": "a"}, {"id": 0, "name": "b"}]),
      "duplicate id 0 .*'a' and 'b'",
    ),
    (
      _spec([{"id": 0, "name": "a"}, {"id": 1, "name": "a"}]),
      "duplicate class name 'a'",
    ),
    (
      _spec([{"id": 0, "name": "a"}, {"id": 1, "name": "b", "aliases": ["a"]}]),
      "alias 'a' of class 'b' collides with class 'a'",
    ),
    (
      _spec(
        [
          {"id": 0, "name": "a", "aliases": ["x"]},
          {"id": 1, "name": "b", "aliases": ["x"]},
        ]
      ),
      "alias 'x' of class 'b' collides with class 'a'",
    ),
    (
      {"classes": [{"id": 0, "name": "a"}]},
      r"missing required key\(s\) \['name'\]",
    ),
    (
      _spec([{"name": "a"}]),
      r"classes\[0\]: missing required key\(s\) \['id'\]",
    ),
    (
      _spec([{"id": "0", "name": "a"}]),
      "key 'id' must be a JSON integer, got '0'",
    ),
    (_spec([{"id": True, "name": "a"}]), "key 'id' must be a JSON integer"),
    (_spec([{"id": 0, "name": 7}]), "key 'name' must be a JSON string, got 7"),
    (
      _spec([{"id": 0, "name": "a", "aliases": "b"}]),
      "key 'aliases' must be a JSON array",
    ),
    (
      _spec([{"id": 0, "name": "a", "aliases": [3]}]),
      "'aliases' must hold non-empty strings, got 3",
    ),
    (
      _spec([{"id": 0, "name": "a", "alias": ["b"]}]),
      r"unknown key\(s\) \['alias'\]",
    ),
    (_spec([]), '"classes" is empty'),
    (_spec({"a": 0}), "key 'classes' must be a JSON array"),
    ([1, 2], "expected a JSON object"),
  ],
)
def test_validation_errors_name_file_and_problem(tmp_path, data, message):
  path = _write(tmp_path, data)
  with pytest.raises(DataError, match=message) as info:
    labels.load_label_spec(path)
  assert path in str(info.value)


def test_invalid_json_and_missing_file(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text('{"name": "x",\n "classes": [}')
  with pytest.raises(DataError, match="not valid JSON.*line 2"):
    labels.load_label_spec(str(path))
  with pytest.raises(DataError, match="cannot read"):
    labels.load_label_spec(str(tmp_path / "absent.json"))


def test_match_classes_by_name_and_alias():
  spec = labels.label_spec_from_dict(_spec(GOOD_CLASSES), source="toy")
  assert labels.match_classes(spec, ["kitty", "dog"]) == {"kitty": 0, "dog": 1}


def test_match_classes_lists_unknown_and_missing():
  spec = labels.builtin_label_spec("cifar10")
  folders = [n for n in CIFAR_NAMES if n not in ("cat", "ship")] + ["kitten"]
  with pytest.raises(DataError) as info:
    labels.match_classes(spec, folders)
  text = str(info.value)
  assert "unknown classes (not a name or alias in the spec) ['kitten']" in text
  assert "missing classes (in the spec, no folder) ['cat', 'ship']" in text


def test_match_classes_rejects_two_folders_for_one_class():
  spec = labels.label_spec_from_dict(_spec(GOOD_CLASSES), source="toy")
  with pytest.raises(DataError, match="several folders map to one class"):
    labels.match_classes(spec, ["cat", "Cat", "dog"])
