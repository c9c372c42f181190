"""Runtimes: what runs the network. One small interface, one module per runtime, chosen in one place
(`open_runtime`, from roadseg.inference.settings.BACKENDS).

A runtime is called with a (N, 3, h, w) float batch of 0-255 RGB at the network's input size (processing.preprocess
makes it) and returns (N, C, h, w) logits; it says what it computes in (`precision`) and carries `backend`. Each
runtime module has `open(settings, source) -> Runtime`, where `source` is a ModelSource."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import torch


class Runtime(Protocol):
    backend: str
    precision: str  # what the network computes in (for a user's ONNX file: what its graph holds)

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class ModelSource:
    """Where a runtime gets the network from: a checkpoint dict (read once by load), a torch module built already
    (training's validation), or an ONNX graph read already (a bare .onnx file); `name` names it in errors."""

    checkpoint: dict | None = None
    module: torch.nn.Module | None = None
    graph: object = None  # roadseg.optimize.runtime.OnnxGraph
    name: str = "checkpoint"


def open_runtime(settings, source: ModelSource) -> Runtime:
    """The runtime of settings.backend (the module BACKENDS names), opened on `source`."""
    from roadseg.inference.settings import BACKENDS

    return importlib.import_module(BACKENDS[settings.backend][0]).open(settings, source)
