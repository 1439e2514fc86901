"""The fake gateway's chat format routes (placeholder until its issue lands)."""

from aiohttp import web


def setup_routes(app: web.Application) -> None:
    """Register this format's routes on the fake gateway app."""
