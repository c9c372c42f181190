"""Inference optimization: ONNX export, graph fusion, INT8 quantization, reduced precision, benchmark."""
