"""netwatch: one asyncio daemon that watches a city's network plant."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("netwatch")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
