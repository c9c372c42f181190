"""roadseg: drivable-road segmentation with FCN-8s on a VGG16 encoder."""

__version__ = "0.1.0"

from roadseg.errors import RoadsegError  # noqa: E402

__all__ = ["RoadsegError", "__version__"]
