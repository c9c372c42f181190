"""Inference: Predictor (torch / onnxruntime), image and video pipelines, overlays."""
