"""Tests for jvision/train/workdir.py: what may resume where."""

from jvision.train import defaults, workdir


def test_keys_added_later_resume_at_their_old_meaning():
  new = defaults.supervised_config().to_dict()
  old = {k: v for k, v in new.items() if k not in workdir.ADDED_KEYS}
  assert workdir.config_differences(old, new) == []
  new["dtype"] = "bfloat16"
  assert workdir.config_differences(old, new) == [
    "dtype: 'float32' -> 'bfloat16'"
  ]


def test_differences_name_nested_keys():
  old = defaults.supervised_config().to_dict()
  new = defaults.supervised_config().to_dict()
  new["optimizer"]["learning_rate"] = 0.3
  assert workdir.config_differences(old, new) == [
    "optimizer.learning_rate: 0.1 -> 0.3"
  ]


def test_the_data_feed_may_change_on_resume():
  old = defaults.supervised_config().to_dict()
  new = defaults.supervised_config().to_dict()
  new["data"]["feed"] = "device"
  assert workdir.config_differences(old, new) == [
    "data.feed: 'auto' -> 'device'"
  ]
  assert "data.feed" in workdir.RESUMABLE_CHANGES
