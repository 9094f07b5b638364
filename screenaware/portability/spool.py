"""Uploads spooled to a temporary file on disk, bounded in size and line length.

An import is validated whole before anything is stored, so the upload is read
twice; keeping it on disk instead of in memory keeps a worker's memory flat
whatever the size of the file.

A JSON file (one document, often one line) is parsed as a stream, but the parser
still builds each value whole: a bounded value length keeps one huge string or
number from being held. The bound is checked on the bytes as they arrive, without
parsing: the longest stretch between two quotes that are not escaped (no value is
longer than the stretch holding it, so the check may refuse, never miss).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterable, Iterator
from typing import IO

from screenaware.errors import Invalid

FILL_PIECE = 1 << 20


class Spool:
    """A temporary file receiving an upload chunk by chunk.

    Args:
        max_bytes: the largest upload accepted.
        max_line_bytes: the longest line accepted (JSON Lines files); None for
            formats that are one JSON document.
        max_value_bytes: the longest JSON value accepted (JSON files), about; None
            for no bound.
    """

    def __init__(
        self, max_bytes: int, max_line_bytes: int | None = None, max_value_bytes: int | None = None
    ) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile()
        self._max_bytes = max_bytes
        self._max_line = max_line_bytes
        self._max_value = max_value_bytes
        self.size = 0
        self._line = 1
        self._line_length = 0
        self._stretch = 0  # bytes since the last unescaped quote
        self._last = b""  # the byte before the chunk (an escaping backslash?)

    def write(self, chunk: bytes) -> None:
        """Append a chunk; :class:`Invalid` past a limit."""
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise Invalid(f"The file exceeds {self._max_bytes} bytes", {"file": ["Too large."]})
        if self._max_line is not None:
            start = 0
            while True:
                newline = chunk.find(b"\n", start)
                piece = (newline if newline >= 0 else len(chunk)) - start
                self._line_length += piece
                if self._line_length > self._max_line:
                    raise Invalid(
                        f"line {self._line}: longer than {self._max_line} bytes",
                        {"line": self._line, "file": ["Line too long."]},
                    )
                if newline < 0:
                    break
                self._line += 1
                self._line_length = 0
                start = newline + 1
        if self._max_value is not None and chunk:
            self._check_stretch(chunk, self._max_value)
        self._file.write(chunk)

    def _check_stretch(self, chunk: bytes, limit: int) -> None:
        # Split at the quotes that end or start a string (inside one, every quote
        # is escaped; a quote after an escaped backslash counts as escaped too, so
        # a stretch can only come out longer). Both run in C: a few ms per MB.
        pieces = (self._last + chunk).replace(b'\\"', b"\\_").split(b'"')
        first = self._stretch + len(pieces[0]) - len(self._last)
        longest = max(first, max(map(len, pieces[1:]), default=0))
        self._stretch = first if len(pieces) == 1 else len(pieces[-1])
        self._last = chunk[-1:]
        if longest > limit:
            raise Invalid(
                f"file: a value near byte {self.size - len(chunk)} is longer than {limit} bytes",
                {"file": ["A value too long."]},
            )

    async def fill(self, chunks: AsyncIterable[bytes]) -> Spool:
        """Write every chunk of an upload (the disk writes off the event loop, in
        pieces of about ``FILL_PIECE`` bytes: few thread hops, bounded memory)."""
        pending: list[bytes] = []
        size = 0
        async for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= FILL_PIECE:
                await asyncio.to_thread(self.write, b"".join(pending))
                pending, size = [], 0
        if pending:
            await asyncio.to_thread(self.write, b"".join(pending))
        await asyncio.to_thread(self._file.flush)
        return self

    def fill_from(self, source: IO[bytes], chunk_size: int = 1 << 20) -> Spool:
        """Write a local file (the CLI)."""
        while chunk := source.read(chunk_size):
            self.write(chunk)
        self._file.flush()
        return self

    def reader(self) -> IO[bytes]:
        """The file, rewound to its start."""
        self._file.seek(0)
        return self._file

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """The non-blank lines with their 1-based numbers."""
        for number, line in enumerate(self.reader(), start=1):
            if line.strip():
                yield number, line

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
