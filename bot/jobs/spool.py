"""Reference images of jobs that wait: kept in temp files, not in memory, until the job is sent upstream.

A busy server can have many jobs waiting for a slot, each with up to a few 10 MiB images; holding them all in
memory costs what the queue is long. A `Spool` writes them to disk (off the event loop) when the job is accepted
and reads them back just before the request goes out; the files go when the job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bot.upstream.types import ReferenceImage


@dataclass(frozen=True, slots=True)
class SpooledImage:
    path: Path
    filename: str
    content_type: str


class Spool:
    def __init__(self, images: tuple[SpooledImage, ...] = ()) -> None:
        self.images = images

    @classmethod
    async def write(cls, images: tuple[ReferenceImage, ...]) -> Spool:
        spooled = []
        try:
            for image in images:
                if image.data is None:
                    continue
                spooled.append(await asyncio.to_thread(_write, image))
        except BaseException:
            await cls(tuple(spooled)).discard()
            raise
        return cls(tuple(spooled))

    async def read(self) -> tuple[ReferenceImage, ...]:
        images = []
        for image in self.images:
            data = await asyncio.to_thread(image.path.read_bytes)
            images.append(ReferenceImage(data=data, filename=image.filename, content_type=image.content_type))
        return tuple(images)

    async def discard(self) -> None:
        for image in self.images:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(image.path.unlink)
        self.images = ()


def _write(image: ReferenceImage) -> SpooledImage:
    assert image.data is not None
    fd, name = tempfile.mkstemp(prefix="sora-ref-", suffix=Path(image.filename).suffix or ".img")
    with os.fdopen(fd, "wb") as file:
        file.write(image.data)
    return SpooledImage(Path(name), image.filename, image.content_type)


__all__ = ["Spool", "SpooledImage"]
