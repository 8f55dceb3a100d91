"""Plain-PyTorch twins of jvision's benchmark models and train steps.

    python -m benchmarks.reference_torch   # asserts the parameter counts

Written from jvision's definitions (no torchvision), for
`benchmarks.compare`: the seed CNN (jvision.models.cnn.SeedCNN, VALID
padding), ResNet-18 with the CIFAR stem (jvision.models.resnet, stem="cifar")
and the SimCLR network (ResNet-18 backbone, jvision.models.heads.MLPHead
projection 512 -> 512 -> BN -> ReLU -> 128 -> BN without affine, and the
online linear probe on detached features). Parameter counts equal jvision's
(`param_counts` checks them: 62,006, 11,173,962 and 11,502,666 for 10
classes); initialisation follows torchvision's, since only the work is
compared, not training curves.

A step is forward + backward + optimizer update on one float32 batch
(the forward optionally under `torch.autocast`, e.g. to bfloat16, on the
device given, "cpu" or "cuda"):
softmax cross-entropy and SGD (momentum, L2 on >= 2-D parameters, as
jvision's "sgd") for the supervised models; NT-Xent (temperature 0.5) on two
views plus the probe's cross-entropy and LARS (optax.lars's order: L2,
trust ratio on >= 2-D parameters, learning rate, momentum) for SimCLR. Only
the constant learning rate differs from jvision's (a cosine schedule whose
value is one scalar per step).
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.1  # torch's convention for flax's momentum=0.9
BN_EPS = 1e-5
BASE_WIDTHS = (64, 128, 256, 512)


class SeedCNN(nn.Module):
  """conv 5x5x6 - pool - conv 5x5x16 - pool - fc 120 - fc 84 - fc K."""

  def __init__(self, num_classes: int = 10, in_channels: int = 3):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, 6, 5)  # VALID
    self.conv2 = nn.Conv2d(6, 16, 5)
    self.fc1 = nn.Linear(16 * 5 * 5, 120)  # 32x32 -> 28 -> 14 -> 10 -> 5
    self.fc2 = nn.Linear(120, 84)
    self.head = nn.Linear(84, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Args: x [N, C, 32, 32]. Returns: [N, K] logits."""
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    x = torch.flatten(x, 1)  # [N, 400]
    return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
  """A bias-free conv with torchvision's padding (kernel // 2)."""
  return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)


def _bn(channels: int, affine: bool = True) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(
    channels, eps=BN_EPS, momentum=BN_MOMENTUM, affine=affine
  )


class BasicBlock(nn.Module):
  """Two 3x3 convs, the first strided; 1x1 conv + BN shortcut if reshaped."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1, self.bn1 = _conv(cin, cout, 3, stride), _bn(cout)
    self.conv2, self.bn2 = _conv(cout, cout, 3), _bn(cout)
    self.shortcut = nn.Identity()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride), _bn(cout))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
  """ResNet-18, CIFAR stem (3x3 conv, stride 1, no max-pool).

  `num_classes` 0 returns the [N, 512] pooled features (a backbone).
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 3):
    super().__init__()
    self.stem = nn.Sequential(
      _conv(in_channels, BASE_WIDTHS[0], 3), _bn(BASE_WIDTHS[0]), nn.ReLU()
    )
    blocks, cin = [], BASE_WIDTHS[0]
    for index, cout in enumerate(BASE_WIDTHS):
      for j in range(2):
        stride = 2 if index > 0 and j == 0 else 1
        blocks.append(BasicBlock(cin, cout, stride))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.head = nn.Linear(cin, num_classes) if num_classes else None
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Args: x [N, C, H, W]. Returns: [N, K] logits or [N, 512] features."""
    x = self.blocks(self.stem(x)).mean(dim=(2, 3))  # [N, 512]
    return x if self.head is None else self.head(x)


class SimCLRNet(nn.Module):
  """ResNet-18 backbone, BN MLP projection head, stop-gradient probe."""

  def __init__(
    self, num_classes: int = 10, hidden_dim: int = 512, out_dim: int = 128
  ):
    super().__init__()
    self.backbone = ResNet18(num_classes=0)
    features = BASE_WIDTHS[-1]
    self.projection = nn.Sequential(
      nn.Linear(features, hidden_dim, bias=False),  # BN's centre is the bias
      nn.BatchNorm1d(hidden_dim, eps=BN_EPS, momentum=BN_MOMENTUM),
      nn.ReLU(),
      nn.Linear(hidden_dim, out_dim, bias=False),
      nn.BatchNorm1d(out_dim, eps=BN_EPS, momentum=BN_MOMENTUM, affine=False),
    )
    self.probe = nn.Linear(features, num_classes)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Args: x [N, C, H, W]. Returns: ([N, D] projections, [N, K] logits)."""
    features = self.backbone(x)  # [N, 512]
    return self.projection(features), self.probe(features.detach())


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float):
  """SimCLR's NT-Xent over the 2N views (jvision.losses.nt_xent, 1 device).

  Args:
    z1, z2: [N, D] projections of the two views, paired row by row.
    temperature: softmax temperature.

  Returns:
    Scalar mean over the 2N anchors.
  """
  n = z1.shape[0]
  h = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]
  logits = h @ h.T / temperature  # [2N, 2N]
  eye = torch.eye(2 * n, dtype=torch.bool, device=h.device)
  logits = logits.masked_fill(eye, float("-inf"))
  positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])  # [2N]
  return F.cross_entropy(logits, positive.to(h.device))


class LARS(torch.optim.Optimizer):
  """optax.lars as jvision configures it, with foreach kernels.

  Per parameter: d = g + wd * p (>= 2-D parameters only); d *= tc * |p| /
  |d| when both norms are positive (>= 2-D only); buf = momentum * buf +
  lr * d; p -= buf.
  """

  def __init__(self, params, *, lr, momentum, weight_decay, trust=0.001):
    defaults = dict(
      lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust
    )
    super().__init__(params, defaults)

  @torch.no_grad()
  def step(self):
    for group in self.param_groups:
      params = [p for p in group["params"] if p.grad is not None]
      grads = [p.grad for p in params]
      bufs = []
      for p in params:
        if "momentum_buffer" not in self.state[p]:
          self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        bufs.append(self.state[p]["momentum_buffer"])
      adapt = [i for i, p in enumerate(params) if p.ndim > 1]
      pa, da = [params[i] for i in adapt], [grads[i] for i in adapt]
      torch._foreach_add_(da, pa, alpha=group["weight_decay"])
      p_norms, d_norms = torch._foreach_norm(pa), torch._foreach_norm(da)
      ratios = [
        torch.where((a > 0) & (b > 0), group["trust"] * a / b, 1.0)
        for a, b in zip(p_norms, d_norms, strict=True)
      ]
      torch._foreach_mul_(da, ratios)
      torch._foreach_mul_(bufs, group["momentum"])
      torch._foreach_add_(bufs, grads, alpha=group["lr"])
      torch._foreach_sub_(params, bufs)


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
  """L2 on >= 2-D parameters only (jvision's decay_bn_and_bias=False)."""
  params = list(model.parameters())
  return [
    {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
    {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
  ]


def _prepare(model, *, channels_last: bool, compile: bool, device: str):
  """(the module to train, the callable to run it with), on `device`."""
  model = model.to(device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  model.train()
  return model, (torch.compile(model) if compile else model)


def _images(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
  """[N, H, W, C] float -> [N, C, H, W] in the chosen memory format."""
  x = x.permute(0, 3, 1, 2)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  return x.contiguous(memory_format=fmt)


def _training_step(
  opt: torch.optim.Optimizer, loss_fn, *, device: str, autocast
):
  """step(*batch) -> loss: zero the gradients, forward (under autocast to
  `autocast`, a torch dtype, when it is not None), backward, optimizer
  step."""

  def step(*batch):
    opt.zero_grad(set_to_none=True)
    cast = torch.autocast(device, dtype=autocast) if autocast else nullcontext()
    with cast:
      loss = loss_fn(*batch)
    loss.backward()
    opt.step()
    return loss

  return step


def supervised_step(
  name: str,
  *,
  lr: float,
  momentum: float,
  weight_decay: float,
  channels_last: bool = False,
  compile: bool = False,
  device: str = "cpu",
  autocast: torch.dtype | None = None,
):
  """step(images [N, C, H, W], labels [N]) -> loss, for "cnn" | "resnet18"."""
  model, run = _prepare(
    {"cnn": SeedCNN, "resnet18": ResNet18}[name](),
    channels_last=channels_last,
    compile=compile,
    device=device,
  )
  opt = torch.optim.SGD(
    _decay_groups(model, weight_decay), lr=lr, momentum=momentum, foreach=True
  )

  def loss_fn(images, labels):
    return F.cross_entropy(run(images), labels)

  return _training_step(opt, loss_fn, device=device, autocast=autocast)


def simclr_step(
  *,
  lr: float,
  momentum: float,
  weight_decay: float,
  temperature: float,
  probe_weight: float,
  channels_last: bool = False,
  compile: bool = False,
  device: str = "cpu",
  autocast: torch.dtype | None = None,
):
  """step(view1, view2 [N, C, H, W], labels [N]) -> loss (NT-Xent + probe)."""
  model, run = _prepare(
    SimCLRNet(), channels_last=channels_last, compile=compile, device=device
  )
  opt = LARS(
    model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
  )

  def loss_fn(view1, view2, labels):
    z, probe_logits = run(torch.cat([view1, view2]))  # [2N, D], [2N, K]
    z1, z2 = z.chunk(2)  # [N, D] each
    probe = F.cross_entropy(probe_logits, torch.cat([labels, labels]))
    return nt_xent(z1, z2, temperature) + probe_weight * probe

  return _training_step(opt, loss_fn, device=device, autocast=autocast)


def torch_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def jvision_count(name: str) -> int:
  """Parameters of jvision's model `name` (initialised shapes only)."""
  import jax
  import jax.numpy as jnp

  from jvision import models
  from jvision.train import defaults, simclr

  if name == "simclr":
    config = defaults.simclr_config()
    config.model.name, config.model.stem = "resnet18", "cifar"
    model = simclr.build_model(config, num_classes=10)
  else:
    kwargs = {"stem": "cifar"} if name == "resnet18" else {}
    model = models.create_model(name, num_classes=10, **kwargs)
  init = functools.partial(model.init, train=False)
  x = jnp.zeros((1, 32, 32, 3), jnp.float32)
  shapes = jax.eval_shape(init, jax.random.PRNGKey(0), x)
  return models.count_params(shapes["params"])


TORCH_MODELS = {"cnn": SeedCNN, "resnet18": ResNet18, "simclr": SimCLRNet}


def param_counts() -> dict[str, dict[str, int]]:
  """{"cnn" | "resnet18" | "simclr": {"jvision": n, "torch": n}}, asserted
  equal."""
  counts = {}
  for name, cls in TORCH_MODELS.items():
    counts[name] = {"jvision": jvision_count(name), "torch": torch_count(cls())}
    if counts[name]["jvision"] != counts[name]["torch"]:
      raise AssertionError(f"{name}: parameter counts differ: {counts[name]}")
  return counts


if __name__ == "__main__":
  for model_name, pair in param_counts().items():
    print(f"{model_name}: {pair['torch']:,} parameters in both")
