"""A real nginx (Debian's) in front of test instances, from the project's configuration.

``screenaware/conf/nginx.conf.tmpl`` is the configuration the README shows: the
README's block is :func:`render` of the README's example values (a test checks it),
and the scale-out test runs nginx on :func:`render` of its own (plain HTTP on a free
port, its instances as upstream servers). nginx runs as the test's own process, with
every path in a temp dir: the machine's /etc/nginx, /var/lib/nginx, /var/log/nginx
and nginx service are never used.
"""

from __future__ import annotations

import getpass
import grp
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

from screenaware.storage.localservers import CONF_DIR, stop_pid

TEMPLATE = CONF_DIR / "nginx.conf.tmpl"


class _NginxTemplate(Template):
    # nginx's own variables are spelled with "$": placeholders use "@{name}" instead,
    # so the template is nginx's text as it is.
    delimiter = "@"


def render(servers: Sequence[str], listen: Sequence[str], server_name: str) -> str:
    """The project's nginx configuration (what goes inside nginx's ``http`` block).

    Args:
        servers: ``HOST:PORT`` of every instance.
        listen: the ``listen`` directive and, for TLS, the certificate directives.
        server_name: the public host name.
    """
    return _NginxTemplate(TEMPLATE.read_text()).substitute(
        servers="\n".join(f"    server {server};" for server in servers),
        listen="\n".join(f"    {line}" for line in listen),
        server_name=server_name,
    )


# The README's example: two machines behind nginx, TLS at nginx.
README_SERVERS = ("10.0.0.11:8080", "10.0.0.12:8080")
README_LISTEN = (
    "listen 443 ssl;",
    "ssl_certificate /etc/ssl/certs/presence.example.org.pem;",
    "ssl_certificate_key /etc/ssl/private/presence.example.org.key;",
)
README_SERVER_NAME = "presence.example.org"


def readme_example() -> str:
    """The configuration as the README shows it."""
    return render(README_SERVERS, README_LISTEN, README_SERVER_NAME)


@dataclass
class Nginx:
    url: str
    proc: subprocess.Popen[bytes]
    access_log: Path
    error_log: Path


def _main_conf(prefix: Path, site: Path) -> str:
    """nginx.conf around the project's part: every path under ``prefix``."""
    # As root, nginx's workers would run as "nobody" and could not use the temp dir.
    user = ""
    if os.geteuid() == 0:
        user = f"user {getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name};"
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # One worker: its round robin alternates strictly between the upstream servers.
    return f"""{user}
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$remote_addr "$request" $status $upstream_addr';
    access_log {prefix / "access.log"} upstream;
{temp}
    include {site};
}}
"""


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def run_nginx(
    prefix: Path, port: int, servers: Sequence[str], listen: Sequence[str] = ()
) -> Iterator[Nginx]:
    """Start nginx on 127.0.0.1:``port`` in front of ``servers``; stop it afterwards.

    ``listen``: the listen (and TLS) directives; plain HTTP on ``port`` by default.
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    site = prefix / "screenaware.conf"
    site.write_text(render(servers, listen or [f"listen 127.0.0.1:{port};"], "localhost"))
    conf = prefix / "nginx.conf"
    conf.write_text(_main_conf(prefix, site))
    error_log = prefix / "error.log"
    argv = [
        binary,
        "-p", str(prefix),
        "-c", str(conf),
        # -e: the log before the configuration is read (else Debian's /var/log/nginx).
        "-e", str(error_log),
        "-g", f"daemon off; master_process on; pid {prefix / 'nginx.pid'};",
    ]  # fmt: skip
    with open(prefix / "nginx.out", "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if proc.poll() is not None:
                log = error_log.read_text() if error_log.exists() else ""
                raise RuntimeError(f"nginx exited ({proc.returncode}): {log[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not listen within 30 s")
            time.sleep(0.05)
        scheme = "https" if any(" ssl" in line for line in listen) else "http"
        yield Nginx(f"{scheme}://127.0.0.1:{port}", proc, prefix / "access.log", error_log)
    finally:
        stop_pid(proc.pid, 15, proc)
