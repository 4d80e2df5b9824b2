"""The server's version, as HELLO, INFO and the inspector report it."""

from importlib.metadata import PackageNotFoundError, version

try:
    SERVER_VERSION = version("sierradb")
except PackageNotFoundError:  # running from a source tree without an install
    SERVER_VERSION = "0.0.0"
