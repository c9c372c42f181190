"""The ONNX Runtime runtime: an exported graph (fp32, INT8 QDQ, fp16), read once per session. Without an .onnx file
of the user's, the graph comes from the cache (roadseg.optimize.cache: exported, and INT8 calibrated on the frames
the checkpoint carries, on first use). The graph takes H and W in multiples of 32: frames are padded with the
colour that normalises to zero, as the torch model pads internally, and the logits cropped back."""

from __future__ import annotations

import numpy as np
import torch

from roadseg.errors import PrecisionError


class OrtRuntime:
    backend = "onnxruntime"

    def __init__(self, graph, device: str = "cpu", threads: int = 0, spinning: bool = True):
        from roadseg.optimize.runtime import PROB_OUTPUT, UINT8_NHWC, ort_session

        self.graph, self.meta, self.precision = graph, graph.meta, graph.precision
        self.session = ort_session(graph, device=device, threads=threads, spinning=spinning)
        self.input = self.session.get_inputs()[0].name
        self._half = "float16" in self.session.get_inputs()[0].type
        self.input_kind = "uint8" if self.meta.get("input") == UINT8_NHWC else "float"
        self.output_kind = "prob" if self.meta.get("output") == PROB_OUTPUT else "logits"

    def feed(self, x) -> dict:
        """The session's input for a network batch: padded to the graph's multiple, in the graph's input type."""
        from roadseg.optimize.runtime import pad_batch, pad_frames

        if self.input_kind == "uint8":
            return {self.input: pad_frames(x, self.meta["pad_value"], self.meta["multiple"])}
        a = pad_batch(x, self.meta["pad_value"], self.meta["multiple"]).numpy()
        return {self.input: a.astype(np.float16) if self._half else a}

    def __call__(self, x):
        h, w = x.shape[1:3] if self.input_kind == "uint8" else x.shape[-2:]
        out = self.session.run(None, self.feed(x))[0][:, :, :h, :w]
        out = out if out.dtype == np.float32 else out.astype(np.float32)  # an fp16 graph's output
        return out if self.output_kind == "prob" else torch.from_numpy(out)


def graph_for(settings, source):
    """The graph to run: the source's, the user's settings.onnx (which must hold the precision asked for, unless it
    was left to the file), or the cached one built from the checkpoint."""
    from roadseg.optimize.runtime import read_graph

    if source.graph is not None:
        return source.graph
    if settings.onnx is not None:
        graph = read_graph(settings.onnx)
        if not settings.precision_from_file and graph.precision != settings.precision:
            raise PrecisionError(f"{settings.onnx}: is an {graph.precision} model, not {settings.precision} (leave "
                                 f"precision to the file, or ask for {graph.precision})")
        return graph
    from roadseg.optimize.cache import optimized_model

    path, _ = optimized_model(source.checkpoint, settings.precision, name=source.name)
    return read_graph(path)


def open(settings, source) -> OrtRuntime:  # noqa: A001 - the runtime modules' one entry point
    return OrtRuntime(graph_for(settings, source), settings.device, settings.threads, settings.spinning)
