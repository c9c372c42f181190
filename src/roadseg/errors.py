"""Error types. Every error a user can cause is a RoadsegError with a one-line message
naming the file (or key) and the problem; the CLI turns it into exit code 2."""


class RoadsegError(Exception):
    """Base class: bad input, bad config, missing file. Message is one line for the user."""


class ConfigError(RoadsegError):
    """Unknown key, wrong type or out-of-range value in a config."""


class DataError(RoadsegError):
    """A dataset, image or mask that cannot be used."""


class WeightsError(RoadsegError):
    """A weights file or checkpoint that is missing, corrupt, or of another model."""


class VideoError(RoadsegError):
    """A video that cannot be opened, has no video stream or no frames."""


class PrecisionError(RoadsegError):
    """A backend/precision combination this hardware or install cannot run."""
