"""Label specs: what each class id means, validated against the data.

A label spec is a JSON file:

    {"name": "fashion_mnist",
     "classes": [{"id": 0, "name": "t-shirt_top",
                  "description": "T-shirt or top with short or no sleeves",
                  "aliases": ["T-shirt/top"]}, ...],
     "guidelines": "How an annotator decides between close classes."}

"name", "classes" and each class's "id" and "name" are required;
"description", "aliases" and "guidelines" are optional. Ids run 0..K-1 in any
listed order, names are unique, and an alias may not equal another class's
name or alias. Matching folder names to classes is exact (case-sensitive).
"""

import dataclasses
import importlib.resources
import json
from collections.abc import Iterable

import numpy as np

from jvision.data.dataset import DataError

BUILTIN_SPECS = ("fashion_mnist", "mnist", "cifar10")
_TOP_KEYS = {"name": str, "classes": list, "guidelines": str}
_CLASS_KEYS = {"id": int, "name": str, "description": str, "aliases": list}
_REQUIRED_TOP = ("name", "classes")
_REQUIRED_CLASS = ("id", "name")


@dataclasses.dataclass(frozen=True)
class ClassInfo:
  """One class of a label spec."""

  id: int
  name: str
  description: str = ""
  aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """A validated label spec; `classes[i].id == i`."""

  name: str
  classes: tuple[ClassInfo, ...]
  guidelines: str = ""

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(c.name for c in self.classes)

  @property
  def num_classes(self) -> int:
    return len(self.classes)

  def lookup(self) -> dict[str, int]:
    """Maps every name and alias to its class id."""
    table = {}
    for c in self.classes:
      for key in (c.name, *c.aliases):
        table[key] = c.id
    return table


def load_label_spec(path: str) -> LabelSpec:
  """Reads and validates a label spec JSON file.

  Args:
    path: the JSON file.

  Returns:
    The spec with classes in id order.

  Raises:
    DataError: the file is missing, not JSON, or breaks a rule of the module
      docstring; the message names the file and the offending key or value.
  """
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as e:
    raise DataError(f"label spec {path}: cannot read: {e}") from e
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(
      f"label spec {path}: not valid JSON: {e.msg} at line {e.lineno}, "
      f"column {e.colno}"
    ) from e
  return label_spec_from_dict(data, source=str(path))


def label_spec_from_dict(data: object, *, source: str) -> LabelSpec:
  """Validates a decoded label spec; `source` names it in errors."""
  where = f"label spec {source}"
  _check_keys(data, _TOP_KEYS, _REQUIRED_TOP, where)
  if not data["classes"]:
    raise DataError(f'{where}: "classes" is empty; list at least one class')
  classes = []
  for i, entry in enumerate(data["classes"]):
    _check_keys(entry, _CLASS_KEYS, _REQUIRED_CLASS, f"{where}: classes[{i}]")
    classes.append(_class_info(entry, f"{where}: classes[{i}]"))
  classes.sort(key=lambda c: c.id)
  _check_ids(classes, where)
  _check_names(classes, where)
  return LabelSpec(
    name=data["name"],
    classes=tuple(classes),
    guidelines=data.get("guidelines", ""),
  )


def _check_keys(
  data: object, types: dict[str, type], required: tuple[str, ...], where: str
) -> None:
  """Checks an object's keys: required present, none unknown, right types."""
  if not isinstance(data, dict):
    raise DataError(f"{where}: expected a JSON object, got {data!r}")
  missing = [k for k in required if k not in data]
  if missing:
    raise DataError(f"{where}: missing required key(s) {missing}")
  unknown = sorted(set(data) - set(types))
  if unknown:
    raise DataError(
      f"{where}: unknown key(s) {unknown}; allowed: {sorted(types)}"
    )
  for key, value in data.items():
    expected = types[key]
    if not isinstance(value, expected) or isinstance(value, bool):
      raise DataError(
        f"{where}: key {key!r} must be a JSON {_json_type(expected)}, got "
        f"{value!r}"
      )


def _json_type(python_type: type) -> str:
  return {int: "integer", str: "string", list: "array"}[python_type]


def _class_info(entry: dict, where: str) -> ClassInfo:
  """Builds a ClassInfo from a checked class object."""
  aliases = entry.get("aliases", [])
  for alias in aliases:
    if not isinstance(alias, str) or not alias:
      raise DataError(
        f"{where}: 'aliases' must hold non-empty strings, got {alias!r}"
      )
  if not entry["name"]:
    raise DataError(f"{where}: 'name' must be a non-empty string")
  return ClassInfo(
    id=entry["id"],
    name=entry["name"],
    description=entry.get("description", ""),
    aliases=tuple(aliases),
  )


def _check_ids(classes: list[ClassInfo], where: str) -> None:
  """Raises DataError unless the sorted ids are exactly 0..K-1."""
  by_id: dict[int, str] = {}
  for c in classes:
    if c.id in by_id:
      raise DataError(
        f"{where}: duplicate id {c.id} (classes {by_id[c.id]!r} and {c.name!r})"
      )
    by_id[c.id] = c.name
  expected = set(range(len(classes)))
  if set(by_id) != expected:
    missing = sorted(expected - set(by_id))
    extra = sorted(set(by_id) - expected)
    raise DataError(
      f"{where}: ids must run 0..{len(classes) - 1} without gaps; missing "
      f"ids {missing}, out-of-range ids {extra}"
    )


def _check_names(classes: list[ClassInfo], where: str) -> None:
  """Raises DataError if a name or alias belongs to two classes."""
  owner: dict[str, str] = {}
  for c in classes:
    if c.name in owner:
      raise DataError(f"{where}: duplicate class name {c.name!r}")
    owner[c.name] = c.name
  for c in classes:
    for alias in c.aliases:
      if owner.get(alias, c.name) != c.name:
        raise DataError(
          f"{where}: alias {alias!r} of class {c.name!r} collides with "
          f"class {owner[alias]!r}"
        )
      owner[alias] = c.name


def builtin_label_spec(name: str) -> LabelSpec:
  """Loads a spec shipped in `jvision/data/label_specs/`.

  Args:
    name: one of BUILTIN_SPECS.

  Returns:
    The validated spec.
  """
  if name not in BUILTIN_SPECS:
    raise DataError(
      f"no built-in label spec {name!r}; available: {list(BUILTIN_SPECS)}"
    )
  resource = importlib.resources.files("jvision.data") / "label_specs"
  path = resource / f"{name}.json"
  data = json.loads(path.read_text(encoding="utf-8"))
  return label_spec_from_dict(data, source=str(path))


def match_classes(
  spec: LabelSpec, folder_names: Iterable[str]
) -> dict[str, int]:
  """Maps class folder names to spec ids through names and aliases.

  Args:
    spec: the label spec.
    folder_names: the class names found in the data.

  Returns:
    {folder name: class id} for every folder name.

  Raises:
    DataError: some folder names are neither a name nor an alias (unknown),
      some spec classes have no folder (missing), or two folders map to one
      class; the message lists them.
  """
  table = spec.lookup()
  folder_names = sorted(set(folder_names))
  unknown = [n for n in folder_names if n not in table]
  mapping = {n: table[n] for n in folder_names if n in table}
  missing = [c.name for c in spec.classes if c.id not in mapping.values()]
  if unknown or missing:
    raise DataError(
      f"class folders do not match label spec {spec.name!r}: unknown "
      f"classes (not a name or alias in the spec) {unknown}; missing "
      f"classes (in the spec, no folder) {missing}; spec names "
      f"{list(spec.class_names)}"
    )
  by_id: dict[int, list[str]] = {}
  for folder, class_id in mapping.items():
    by_id.setdefault(class_id, []).append(folder)
  clashes = {spec.classes[i].name: f for i, f in by_id.items() if len(f) > 1}
  if clashes:
    raise DataError(
      f"several folders map to one class of label spec {spec.name!r}: {clashes}"
    )
  return mapping


def cache_key(spec: LabelSpec | None) -> list | None:
  """What of a label spec changes a loaded split (names and aliases per
  id), for the decoded-array cache's key; None without a spec."""
  if spec is None:
    return None
  return [[c.name, *c.aliases] for c in spec.classes]


def remap(labels, names, label_spec: LabelSpec | None, source: str):
  """Labels of a source whose class `names` (by label id) a label spec
  renames: (int32 labels [N] in the spec's ids, the spec's class names);
  (labels, names) without a spec. `source` prefixes errors."""
  if label_spec is None:
    return labels, tuple(names)
  try:
    mapping = match_classes(label_spec, names)
  except DataError as e:
    raise DataError(f"{source}: {e}") from e
  lut = np.asarray([mapping[n] for n in names], dtype=np.int32)
  return lut[labels], label_spec.class_names
