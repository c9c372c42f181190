"""Runtimes: what runs the network. One small interface, one module per runtime, chosen in one place
(`open_runtime`, from roadseg.inference.settings.BACKENDS).

A runtime is called with a network batch at the network's input size, as processing.preprocess makes it for the
runtime's `input_kind`: 'float', (N, 3, h, w) float 0-255 RGB (torch), or 'uint8', (N, h, w, 3) uint8 RGB frames (the
ONNX graphs: no conversion on the frame's way in). It returns, by its `output_kind`, 'logits' (N, C, h, w) or 'prob',
the road probability (N, 1, h, w) as a numpy array (processing.postprocess reads either). It says what it computes
in (`precision`) and carries `backend`. Each runtime module has `open(settings, source) -> Runtime`, where `source` is
a ModelSource."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import torch


class Runtime(Protocol):
    backend: str
    precision: str  # what the network computes in (for a user's ONNX file: what its graph holds)
    input_kind: str  # 'float' | 'uint8'
    output_kind: str  # 'logits' | 'prob'

    def __call__(self, x): ...


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
