"""The classifier: an MLP over 2-D points built from its config (stages/params.py's ModelConfig), its
optimizer, and the torch side of its checkpoint (the file itself is stages/checkpoint.py's)."""

import os

import torch
from torch import nn
from torch.optim.adam import adam

from stages.checkpoint import read_checkpoint, write_checkpoint, write_snapshots
from stages.errors import UserError
from stages.functions import ACTIVATIONS as DEFINITIONS
from stages.functions import features
from stages.params import ModelConfig

# Each activation's torch module, from its one definition in stages/functions.py.
ACTIVATIONS = {name: activation.torch(torch) for name, activation in DEFINITIONS.items()}


class MLP(nn.Module):
    """The features of each point (stages/functions.py), then a Linear layer per width of
    config.hidden with the activation after each, then the output layer: as many logits as the
    config's problem reads (one for two classes, one per class otherwise). No hidden layer: a linear
    model of the features."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        layers = []
        for _, fan_in, fan_out in config.linear_layers():
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[config.activation]()]
        self.net = nn.Sequential(*layers[:-1])  # no activation after the output layer

    def forward(self, points):
        return self.net(features(torch, points, self.config.features))


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """The sum of |w| over the weights, not the biases, as TensorFlow Playground's L1 takes it."""
    return sum(param.abs().sum() for name, param in model.named_parameters() if name.endswith("weight"))


class Adam:
    """Adam (Kingma & Ba, 2015), step for step as torch.optim.Adam(fused=True) computes it: torch's
    functional adam, with one fused kernel updating every parameter.

    torch.optim.Adam imports torch's compiler when first stepped, a start-up cost that every training
    run would pay (docs/benchmarks.md times it). The functional form does not, as tests/test_models.py
    checks, along with this class against torch.optim.Adam bit for bit.
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # Each parameter's step count, a float32 tensor as the fused kernel wants; adam increments it.
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self):
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self):
        adam(
            self.params,
            [param.grad for param in self.params],
            self.exp_avg,
            self.exp_avg_sq,
            [],  # the running maxima of exp_avg_sq, kept only by AMSGrad
            self.steps,
            fused=True,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )


@torch.inference_mode()
def logits_of(model: nn.Module, points, batch_size: int = ModelConfig.INFERENCE_BATCH) -> torch.Tensor:
    """The model's logits for many points, a batch at a time to bound memory."""
    device = next(model.parameters()).device
    points = torch.as_tensor(points, dtype=torch.float32)
    return torch.cat([model(chunk.to(device)).cpu() for chunk in points.split(batch_size)])


def save_checkpoint(path, model: MLP, device: str = "cpu") -> None:
    weights = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    write_checkpoint(path, model.config, weights, device)


def weights_now(model: MLP) -> torch.Tensor:
    """One snapshot: every parameter as it is, flattened into one new tensor (a single copy, the
    cheapest to take at every kept epoch), on the CPU."""
    return torch.cat([param.detach().reshape(-1) for param in model.parameters()]).cpu()


def save_snapshots(
    path, model: MLP, epochs: list[int], snapshots: list[torch.Tensor], device: str = "cpu"
) -> None:
    """The weights_now() taken at each of `epochs`, each parameter stacked, in a file of their own."""
    flat, stacked, start = torch.stack(snapshots).numpy(), {}, 0
    for name, param in model.named_parameters():
        stacked[name] = flat[:, start : start + param.numel()].reshape(len(snapshots), *param.shape)
        start += param.numel()
    write_snapshots(path, model.config, epochs, stacked, device)


def load_checkpoint(path, name: str | None = None, dataset=None) -> MLP:
    """Rebuild a model from its checkpoint (checked whole by read_checkpoint: plain data, never code),
    refused if it disagrees with the `dataset`'s params (Checkpoint.check), when given."""
    saved = read_checkpoint(path)
    if dataset is not None:
        saved.check(path, name, dataset)
    model = MLP(saved.config)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in saved.weights.items()})
    return model.eval()


def configure_torch(seed: int = 0, device: torch.device | None = None) -> None:
    """Seed torch and pin it to one thread: CPU results then do not depend on the machine's core
    count, and at this size one thread is also the fastest."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    if device is not None and device.type == "cuda":
        # The CPU kernels used here are deterministic as they are; the flag is for CUDA's (it
        # imports torch's compiler, so CPU runs go without it: benchmarks/bench_imports.py).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def resolve_device(device: str, key: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and torch.version.cuda is None:
        release = torch.__version__.split("+")[0]
        raise UserError(
            f"{key} = 'cuda': this torch ({torch.__version__}) is a CPU-only build; install one with CUDA "
            f"(`pip install torch=={release}` from PyPI on Linux x86-64), or use cpu or auto"
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key} = 'cuda': no CUDA device is available here; use cpu or auto")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    """What a checkpoint records of the hardware that trained it: cpu, or cuda with the GPU's model
    (CUDA writes other bytes than a CPU, the same on the same GPU model)."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
