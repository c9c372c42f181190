"""The torch runtime: the FCN module in eager mode (fp32; bf16 or fp16 autocast; fp16 on CUDA) or torch.compile."""

from __future__ import annotations

import torch

from roadseg.errors import RoadsegError


class TorchRuntime:
    backend = "torch"
    input_kind, output_kind = "float", "logits"  # see roadseg.inference.runtimes.Runtime

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", device: str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        self._run = torch.compile(self.model, dynamic=True) if precision == "compiled" else self.model
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self._dtype is None:
            return self._run(x)
        with torch.autocast(self.device.type, dtype=self._dtype):
            return self._run(x).float()


def open(settings, source) -> TorchRuntime:  # noqa: A001 - the runtime modules' one entry point
    model = source.module
    if model is None:
        if source.checkpoint is None:
            raise RoadsegError("backend torch needs a checkpoint or a model")
        from roadseg.models.checkpoint import model_from_checkpoint

        model, _ = model_from_checkpoint(source.checkpoint, source.name)
    return TorchRuntime(model, settings.precision, settings.device)
