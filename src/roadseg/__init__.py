"""roadseg: drivable-road segmentation with FCN-8s on a VGG16 encoder."""

__version__ = "0.1.0"

from roadseg.errors import RoadsegError  # noqa: E402

__all__ = ["RoadsegError", "__version__", "load"]


def __getattr__(name):  # `roadseg.load` without importing torch at `import roadseg`
    if name == "load":
        from roadseg.inference.predictor import load

        return load
    raise AttributeError(f"module 'roadseg' has no attribute {name!r}")
