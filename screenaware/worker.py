"""The gunicorn worker class of the service (``--worker-class screenaware.worker.Worker``)."""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):
    """uvicorn's gunicorn worker with uvicorn's own access log off.

    The service writes its own access lines (JSON, buffered; ``SCREENAWARE_ACCESS_LOG``).
    uvicorn's would otherwise build a log record per request for a logger that
    gunicorn leaves without a handler unless ``--access-logfile`` is given: about
    5 µs of CPU per request (a trivial responder costs about 40 µs), for nothing.
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, "access_log": False}
