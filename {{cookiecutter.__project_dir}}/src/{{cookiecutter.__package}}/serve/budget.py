"""The server-wide budget of image pixels being decoded, and the memory handed back after a burst of them.

The limits on one request (data/codec.py) do not bound a server: 10 concurrent requests of large images, each
within them, were decoded together on up to 40 threads and took the MNIST server from 0.9 GB to 6.2 GB. So every
request holds its pixels (read from its files' headers, before any is decoded) out of `max_decoding_pixels` while
it is decoded; one that finds them taken waits up to WAIT_S, then gets 503 with a Retry-After header. PIL keeps up
to 4 bytes per decoded pixel, and a converted copy up to 4 more.

When the last decoding ends, glibc is asked to hand the freed heap back (`malloc_trim`): else it keeps some of what
a burst freed in its per-thread arenas (10 requests on 40 threads: 200 MB kept without it, 20 MB with it).
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import HTTPException

WAIT_S = 1.0  # how long a request waits for pixels others hold before it is refused
RETRY_AFTER_S = 1


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc; musl and macOS have none, and need none
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _malloc_trim()


class PixelBudget:
    def __init__(self, total: int) -> None:
        self.total = self.free = total
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        """Hold `pixels` of the budget while the body runs: wait up to WAIT_S for them, else 503."""
        if pixels > self.total:
            problem = f"the images hold {pixels} pixels, more than this server decodes at once ({self.total})"
            raise HTTPException(422, f"{problem}: send fewer or smaller images")
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.free >= pixels), WAIT_S)
            except TimeoutError:
                busy = f"the server is decoding as many image pixels as it may ({self.total})"
                raise HTTPException(503, f"{busy}; try again", {"Retry-After": str(RETRY_AFTER_S)}) from None
            self.free -= pixels
        try:
            yield
        finally:
            async with self._changed:
                self.free += pixels
                self._changed.notify_all()
            if pixels and self.free == self.total and MALLOC_TRIM is not None:
                asyncio.get_running_loop().run_in_executor(None, MALLOC_TRIM, 0)  # ms: not on the event loop
