"""jvision vs plain PyTorch: images/s of the same train step on this machine.

    python -m benchmarks.compare [--rounds=N] [--steps=N]
        [--models=cnn,resnet18,simclr] [--torch_modes=eager,channels_last,
        compiled] [--dtype=float32|bfloat16] [--batch_multiplier=1]

For each model, the jitted jvision step and the PyTorch step of
benchmarks.reference_torch in each of `--torch_modes` run alternately
(jvision, then each PyTorch mode, per round) for a number of rounds. The
modes: "eager" (NCHW tensors), "channels_last" (eager, channels-last
memory format) and "compiled" (torch.compile of the channels-last model).
A measurement is `--warmup` untimed steps in the first round
(`--later_warmup` in the others), then the median of the timed steps
(block_until_ready on the JAX side, cuda.synchronize on a GPU's torch
side), as images/s. Rounds and timed steps are per model (ROUNDS, STEPS:
fewer for the slow ResNet and SimCLR steps, so that the whole comparison
stays under 20 minutes on a 2-core AVX2 CPU, where a SimCLR step takes
~10 s) unless `--rounds` / `--steps` set them for all. Reported per
model: the median over rounds of each, the ratio jvision / PyTorch for
each mode and against the fastest mode, the achieved FLOP/s of each and
its fraction of the machine's matmul peak (on a GPU in bfloat16: the
model FLOP utilisation, MFU, against the measured peak).

Both sides run where JAX runs: on a GPU backend PyTorch runs on CUDA (it
must see the GPU). `--dtype=bfloat16` computes jvision's model in bfloat16
(config.dtype) and runs PyTorch's forward under torch.autocast(bfloat16);
parameters, optimizer state and losses stay float32 on both.
`--batch_multiplier` scales every batch (a GPU needs larger ones).

The same work on both sides: forward + backward + optimizer update on one
resident batch of 32x32x3 images; seed CNN batch 256, ResNet-18 (CIFAR stem)
128, both with softmax cross-entropy and SGD (momentum 0.9, L2 5e-4 on >= 2-D
parameters); SimCLR 128 images x 2 views through ResNet-18 + the BN MLP
projection head + the online probe, NT-Xent (temperature 0.5) + probe
cross-entropy and LARS; its images/s counts views (256 per step), as the
trainer's log does. The jvision side is `supervised.train_step` /
`simclr.train_step` from the real config (jvision.train.defaults), with the
augmentation replaced by normalisation of the uint8 batch (SimCLR's second
view is the mirrored batch), since the torch side takes ready float views;
torch's learning rate is a constant where jvision evaluates its schedule.

FLOPs per step, used for both sides, are those of the plain network:
PyTorch's FlopCounterMode over one eager reference step (convolutions and
matrix products, forward and backward; no input gradient for the images).
XLA's own count of the compiled jvision step is recorded beside it
(`xla_flops_per_step`); it counts the work as jvision's kernels do it (the
seed CNN's fused conv-pool computes zero taps, ResNet's count is ~1.7x).
The peak is the fastest square matmul in `--dtype` found, median of 5 each,
in GFLOP/s, over torch, XLA (jax.jit) and, on the CPU in float32, numpy,
and the sides in `--matmul_sizes` (on the Zen 5 VM XLA's reaches ~360-430,
OpenBLAS's ~220).
Results: benchmarks/results/compare_<backend>_<dtype>[_x<multiplier>].json,
where on the CPU the backend is tagged with the kind of CPU
(compare_cpu_avx2_float32.json; `results_name`), so that no run replaces
another machine's.
"""

from __future__ import annotations

import functools
import statistics

import jax
import numpy as np
import torch
from absl import app, flags
from torch.utils import flop_counter

from benchmarks import common, reference_torch
from jvision import logging_setup, models, optim, parallel
from jvision.data import augment
from jvision.train import defaults, setup, simclr, supervised

_MODELS = flags.DEFINE_list(
  "models", ["cnn", "resnet18", "simclr"], "Models to compare."
)
_ROUNDS = flags.DEFINE_integer(
  "rounds", None, "Alternating jvision/torch rounds (default: ROUNDS)."
)
_STEPS = flags.DEFINE_integer(
  "steps", None, "Timed steps per measurement (default: STEPS)."
)
_WARMUP = flags.DEFINE_integer(
  "warmup", 2, "Untimed steps per measurement in the first round."
)
_LATER_WARMUP = flags.DEFINE_integer(
  "later_warmup", 1, "Untimed steps per measurement after the first round."
)
_TORCH_MODES = flags.DEFINE_list(
  "torch_modes",
  ["eager", "channels_last", "compiled"],
  "PyTorch variants to measure (see the module doc).",
)
_DTYPE = flags.DEFINE_enum(
  "dtype",
  "float32",
  ["float32", "bfloat16"],
  "Computation dtype: jvision's config.dtype, torch.autocast on the torch "
  "side; parameters stay float32 on both.",
)
_BATCH_MULTIPLIER = flags.DEFINE_integer(
  "batch_multiplier", 1, "Multiplies every model's batch (e.g. 4 on a GPU)."
)
_MATMUL_SIZES = flags.DEFINE_list(
  "matmul_sizes",
  ["1024", "2048", "4096"],
  "Sides of the square matmuls that measure the peak.",
)

BATCH = {"cnn": 256, "resnet18": 128, "simclr": 128}
# Per model: a SimCLR step takes ~4 s on the Zen 5 VM and ~10 s on a
# 2-core AVX2 EPYC, where 3 rounds of 10 steps made the comparison 40 min.
ROUNDS = {"cnn": 3, "resnet18": 3, "simclr": 2}
STEPS = {"cnn": 10, "resnet18": 5, "simclr": 3}
VIEWS = {"cnn": 1, "resnet18": 1, "simclr": 2}  # images per example
IMAGE_SHAPE = (32, 32, 3)
TORCH_MODES = {  # mode -> torch_step keyword arguments
  "eager": dict(compile=False, channels_last=False),
  "channels_last": dict(compile=False, channels_last=True),
  "compiled": dict(compile=True, channels_last=True),
}
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
TORCH_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # autocast


def batch_size(name: str) -> int:
  """The batch of `name` (BATCH) times --batch_multiplier."""
  return BATCH[name] * _BATCH_MULTIPLIER.value


def torch_device() -> str:
  """ "cuda" when JAX runs on a GPU (PyTorch must see one too), else "cpu"."""
  if jax.default_backend() != "gpu":
    return "cpu"
  if not torch.cuda.is_available():
    raise RuntimeError(
      "JAX runs on a GPU but PyTorch sees none: install a CUDA build of "
      "torch to compare on the GPU"
    )
  return "cuda"


def _synchronized(run, device: str):
  """`run`, then wait for the GPU's queued work when `device` is "cuda"."""
  if device != "cuda":
    return run

  def synced():
    run()
    torch.cuda.synchronize()

  return synced


def jax_config(name: str):
  """The real trainer config for `name`, CIFAR-10 shaped."""
  if name == "simclr":
    config = defaults.simclr_config()
  else:
    config = defaults.supervised_config()
  config.model.name = "cnn" if name == "cnn" else "resnet18"
  if name != "cnn":
    config.model.stem = "cifar"  # 32x32 inputs
  config.batch_size = batch_size(name)
  config.dtype = _DTYPE.value
  return config


def _normalize(images, key):
  """The step's `preprocess`: normalisation only (no augmentation)."""
  del key
  return augment.normalize(images, mean=MEAN, std=STD)


def _two_views(images, key):
  """SimCLR `views` without augmentation: the batch and its mirror image."""
  x = _normalize(images, key)
  return x, x[:, :, ::-1]


def jax_step(name: str):
  """(run one step and block, FLOPs per step) for jvision's step."""
  config = jax_config(name)
  lr_fn = optim.create_learning_rate_fn(
    base_learning_rate=config.optimizer.learning_rate,
    num_train_steps=config.num_train_steps,
    warmup_steps=config.optimizer.warmup_steps,
  )
  model_kwargs = {
    **models.config_kwargs(config.model),
    "dtype": setup.model_dtype(config),
  }
  if name == "simclr":
    model = simclr.build_model(
      config, num_classes=10, model_kwargs=model_kwargs
    )
    step = functools.partial(
      simclr.train_step,
      learning_rate_fn=lr_fn,
      views=_two_views,
      temperature=config.simclr.temperature,
      probe_weight=config.simclr.probe_weight,
    )
  else:
    model = models.create_model(
      config.model.name, num_classes=10, **model_kwargs
    )
    step = functools.partial(
      supervised.train_step,
      learning_rate_fn=lr_fn,
      preprocess=_normalize,
      label_smoothing=config.loss.label_smoothing,
    )
  state = supervised.create_train_state(
    config, model, image_shape=IMAGE_SHAPE, learning_rate_fn=lr_fn
  )
  mesh = parallel.create_mesh()
  batch = common.device_batch(batch_size(name), IMAGE_SHAPE, mesh)
  holder = {"state": parallel.replicate(state, mesh)}
  p_step = parallel.jit_data_parallel(step, mesh, donate_state=True)
  compiled = p_step.lower(holder["state"], batch).compile()

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  return run, _flops(compiled)


def _flops(compiled) -> float | None:
  """XLA's FLOP count of a compiled computation (None if unavailable)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, list | tuple):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def torch_step(name: str, *, compile: bool, channels_last: bool):
  """Run one step of the PyTorch twin of jvision's `name` step."""
  config = jax_config(name)
  opt = config.optimizer
  kw = dict(
    lr=opt.learning_rate,
    momentum=opt.momentum,
    weight_decay=opt.weight_decay,
    channels_last=channels_last,
    compile=compile,
    device=torch_device(),
    autocast=TORCH_DTYPES[_DTYPE.value],
  )
  gen = torch.Generator().manual_seed(0)
  shape = (batch_size(name), *IMAGE_SHAPE)

  def images():
    x = torch.randn(shape, generator=gen).to(kw["device"])  # [N, H, W, C]
    return reference_torch._images(x, channels_last)  # [N, C, H, W]

  labels = torch.randint(0, 10, (batch_size(name),), generator=gen)
  labels = labels.to(kw["device"])
  if name == "simclr":
    step = reference_torch.simclr_step(
      temperature=config.simclr.temperature,
      probe_weight=config.simclr.probe_weight,
      **kw,
    )
    view1, view2 = images(), images()
    return _synchronized(lambda: step(view1, view2, labels), kw["device"])
  step = reference_torch.supervised_step(name, **kw)
  x = images()
  return _synchronized(lambda: step(x, labels), kw["device"])


def model_flops(name: str) -> int:
  """FLOPs of one eager PyTorch reference step (FlopCounterMode's count)."""
  run = torch_step(name, compile=False, channels_last=False)
  run()  # the optimizer's state exists from here on, as in timed steps
  with flop_counter.FlopCounterMode(display=False) as counter:
    run()
  return counter.get_total_flops()


def _matmuls(n: int, dtype: str) -> dict:
  """{library: run one [n, n] @ [n, n] matmul in `dtype` and wait for it}.

  numpy (float32 only) joins on the CPU alone, where it is the device."""
  a = np.random.default_rng(0).standard_normal((n, n), np.float32)
  device = torch_device()
  ta = torch.from_numpy(a).to(device, getattr(torch, dtype))
  ja = jax.device_put(a.astype(jax.numpy.dtype(dtype)))
  xla_matmul = jax.jit(lambda x: x @ x)
  runs = {
    "torch": _synchronized(lambda: ta @ ta, device),
    "xla": lambda: xla_matmul(ja).block_until_ready(),
  }
  if device == "cpu" and dtype == "float32":
    runs["numpy"] = lambda: a @ a
  return runs


def matmul_peak_gflops(sizes: list[int], dtype: str) -> dict[str, float]:
  """{"numpy" | "torch" | "xla": best median-of-5 GFLOP/s over `sizes`}."""
  rates = {}
  for n in sizes:
    for lib, fn in _matmuls(n, dtype).items():
      fn()  # warm-up (and compilation)
      rate = 2 * n**3 / statistics.median(common.step_seconds(fn, 5, 0)) / 1e9
      rates[lib] = max(rate, rates.get(lib, 0.0))
  return rates


def _rate_record(values: list[float], flops: float, images: int, peak):
  """images/s over rounds -> their median, GFLOP/s and fraction of peak."""
  rate = statistics.median(values)
  gflops = flops * rate / images / 1e9
  return {
    "images_per_sec": rate,
    "rounds": values,
    "gflops_per_sec": gflops,
    "fraction_of_peak": gflops / peak,
  }


def rounds_and_steps(name: str) -> tuple[int, int]:
  """(rounds, timed steps) for `name`: the flags if set, else ROUNDS, STEPS."""
  return (_ROUNDS.value or ROUNDS[name], _STEPS.value or STEPS[name])


def compare(name: str, modes: list[str], peak):
  """ABAB rounds of jvision and each PyTorch mode for `name`: the record."""
  rounds, steps = rounds_and_steps(name)
  images = batch_size(name) * VIEWS[name]
  flops = model_flops(name)
  jax_run, xla_flops = jax_step(name)
  runs = {"jvision": jax_run}
  for mode in modes:
    runs[mode] = torch_step(name, **TORCH_MODES[mode])
  rates = {side: [] for side in runs}
  for i in range(rounds):
    warmup = _WARMUP.value if i == 0 else _LATER_WARMUP.value
    for side, run in runs.items():
      times = common.step_seconds(run, steps, warmup)
      rates[side].append(images / statistics.median(times))
  summary = functools.partial(
    _rate_record, flops=flops, images=images, peak=peak
  )
  mine = summary(rates["jvision"])
  theirs = {mode: summary(rates[mode]) for mode in modes}
  ratios = {
    mode: mine["images_per_sec"] / theirs[mode]["images_per_sec"]
    for mode in modes
  }
  best = min(modes, key=ratios.get)
  return {
    "batch_size": batch_size(name),
    "rounds": rounds,
    "steps": steps,
    "images_per_step": images,
    "flops_per_step": flops,
    "xla_flops_per_step": xla_flops,
    "jvision": mine,
    "torch": theirs,
    "ratio_jvision_to_torch": ratios,
    "torch_best_mode": best,
    "ratio_jvision_to_best_torch": ratios[best],
  }


def results_name() -> str:
  """E.g. "compare_cpu_avx2_float32" or "compare_gpu_bfloat16_x4": the
  machine (common.machine_tag), dtype and batch multiplier, so that no
  run replaces another kind's."""
  multiplier = _BATCH_MULTIPLIER.value
  suffix = f"_x{multiplier}" if multiplier != 1 else ""
  return f"compare_{common.machine_tag()}_{_DTYPE.value}{suffix}"


def _line(name: str, record: dict) -> str:
  sides = {"jvision": record["jvision"]}
  sides.update({f"torch {m}": r for m, r in record["torch"].items()})
  parts = [f"{name}:"]
  for side, r in sides.items():
    parts.append(
      f"{side} {r['images_per_sec']:.0f} img/s ({r['gflops_per_sec']:.0f} "
      f"GFLOP/s, {100 * r['fraction_of_peak']:.1f}%);"
    )
  parts.append(
    f"ratio to the fastest PyTorch ({record['torch_best_mode']}) "
    f"{record['ratio_jvision_to_best_torch']:.2f}"
  )
  return " ".join(parts)


def main(argv):
  del argv
  unknown = sorted(set(_MODELS.value) - set(BATCH))
  if unknown:
    raise ValueError(f"Unknown models {unknown}; choose from {sorted(BATCH)}")
  unknown = sorted(set(_TORCH_MODES.value) - set(TORCH_MODES))
  if unknown:
    raise ValueError(
      f"Unknown torch modes {unknown}; choose from {sorted(TORCH_MODES)}"
    )
  sizes = [int(n) for n in _MATMUL_SIZES.value]
  peaks = matmul_peak_gflops(sizes, _DTYPE.value)
  peak = max(peaks.values())
  counts = reference_torch.param_counts()  # asserts jvision == torch
  print(f"matmul peak {peak:.0f} GFLOP/s {peaks}; parameters {counts}")
  record = {
    "matmul_peak_gflops": peaks,
    "param_counts": counts,
    "settings": {
      "matmul_sizes": _MATMUL_SIZES.value,
      "rounds": {m: rounds_and_steps(m)[0] for m in _MODELS.value},
      "steps": {m: rounds_and_steps(m)[1] for m in _MODELS.value},
      "warmup": _WARMUP.value,
      "later_warmup": _LATER_WARMUP.value,
      "torch_modes": _TORCH_MODES.value,
      "dtype": _DTYPE.value,
      "batch_multiplier": _BATCH_MULTIPLIER.value,
      "jax_device": jax.devices()[0].device_kind,
      "torch_device": torch_device(),
      "torch_threads": torch.get_num_threads(),
      "torch_version": torch.__version__,
    },
    "models": {},
  }
  for name in _MODELS.value:
    result = compare(name, _TORCH_MODES.value, peak)
    record["models"][name] = result
    print(_line(name, result), flush=True)
    fractions = [result["jvision"]["fraction_of_peak"]]
    fractions += [r["fraction_of_peak"] for r in result["torch"].values()]
    if max(fractions) > 1:
      print(f"  {name}: above the matmul peak: was the machine contended?")
  print("saved", common.save(results_name(), record))


if __name__ == "__main__":
  logging_setup.configure()
  app.run(main)
