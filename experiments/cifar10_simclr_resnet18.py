"""SimCLR pretraining of ResNet-18 on CIFAR-10: the published GPU recipe.

    jvision train --config=experiments/cifar10_simclr_resnet18.py \
        --workdir=workdirs/c10_simclr_r18
    jvision train --config=experiments/cifar10_linear_eval.py \
        --config.init_from=workdirs/c10_simclr_r18 --workdir=workdirs/c10_lin

The CIFAR-10 command of the SimCLR README (google-research/simclr): ResNet-18
with the CIFAR stem (3x3 conv, no max-pool), batch 512, LARS at
learning_rate 1.0 scaled linearly (1.0 x 512 / 256 = 2.0), weight decay
1e-6 (LARS leaves batch norm and biases out of decay and adaptation), 10
warmup epochs then cosine decay, temperature 0.5, colour-jitter strength 0.5,
no blur, global batch norm, 1000 epochs; projection head 512-512-128 with
batch norm (the code's default of 3 projection layers).

Compare the linear evaluation (experiments/cifar10_linear_eval.py) with:
  - about 91% linear-eval accuracy, the SimCLR README's reference for this
    command;
  - 90.74% top-1 (linear) for SimCLR ResNet-18 after 1000 epochs in
    solo-learn's CIFAR-10 table;
  - kNN accuracy 0.848 after 200 epochs (batch 512) for SimCLR in lightly's
    CIFAR-10 benchmark (compare the kNN monitor of metrics.jsonl, which uses
    the same k=200, temperature 0.1 voting).
Our CIFAR-10 is the JPEG-q75 copy in ../shared/data, so accuracies are close
to, not comparable with, those published numbers.

This is a GPU recipe (ResNet-18 at 32x32 runs about 40 images/s on a 2-core
CPU). Arguments: "epochs=N" shortens the schedule (e.g. epochs=200 for
lightly's comparison point); "runlocal" is a one-minute CPU check on 100
images per class with a quarter-width network.
"""

from jvision.train import defaults

TRAIN_EXAMPLES = 50_000


def get_config(arg: str | None = None):
  args = defaults.parse_recipe_arg(
    arg,
    recipe="cifar10_simclr_resnet18.py",
    words=("runlocal",),
    keys=("epochs",),
  )
  epochs = int(args.values.get("epochs", 1000))
  config = defaults.simclr_config()
  config.data.name = "cifar10"
  config.data.mean = (0.4914, 0.4822, 0.4465)  # CIFAR-10 train, [0, 1]
  config.data.std = (0.2470, 0.2435, 0.2616)
  config.model.name = "resnet18"
  config.model.stem = "cifar"
  config.batch_size = 512
  config.eval_batch_size = 1000
  config.augment.crop_scale = (0.08, 1.0)
  config.augment.color_strength = 0.5
  config.augment.blur_p = 0.0
  config.simclr.temperature = 0.5
  config.simclr.proj_hidden_dims = (512, 512)
  config.simclr.proj_dim = 128
  config.optimizer.name = "lars"
  config.optimizer.learning_rate = 1.0 * config.batch_size / 256
  config.optimizer.weight_decay = 1e-6
  config.optimizer.momentum = 0.9
  config.knn.k = 200
  config.knn.temperature = 0.1
  config.log_every_steps = 100
  defaults.set_epochs(
    config,
    epochs=epochs,
    train_examples=TRAIN_EXAMPLES,
    warmup_epochs=min(10, max(1, epochs // 20)),
    eval_every_epochs=min(10, epochs),
  )
  if "runlocal" in args.words:
    defaults.apply_runlocal(config, "runlocal", steps=20)
    config.model.width = 0.25  # as cifar10_linear_eval.py:runlocal
    config.batch_size = 64
    config.data.max_per_class = 100
  return config
