"""What a snapshot says the person was doing: plain functions, no I/O.

A snapshot's activity is its focused window (else the most visible one). From it
come the application (normalised process name), the base document (a URL's last
three host labels, or a local file's name), the category (user rules, then the
built-in catalogue) and the project (the user's project rules, most specific
project winning).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
import uuid as uuidlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from screenaware.activity.learning import Association, features, suggest
from screenaware.storage.ids import uuid5_text

# Fixed namespace: application and category ids are the same on every machine.
NAMESPACE = uuidlib.UUID("6f1c7d2e-3b7a-5e55-9a0e-5c2ee7a3a1de")

NONE = "none"  # tag value of activity without project / category / application


def application_name(process: str | None) -> str | None:
    """Normalise a process name: no directory, no ``.exe``/``.app``, lower case."""
    if not process or not process.strip():
        return None
    name = re.split(r"[\\/]", process.strip())[-1]
    name = re.sub(r"\.(exe|app|bin|desktop)$", "", name, flags=re.IGNORECASE)
    return name.strip().lower() or None


def application_uuid(name: str) -> str:
    """Deterministic id of a normalised application name."""
    return uuid5_text(NAMESPACE, "application:" + name)


def category_uuid(name: str) -> str:
    """Deterministic id of a built-in category."""
    return uuid5_text(NAMESPACE, "category:" + name.lower())


_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_WINDOWS_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")


def _file_name(path: str) -> str | None:
    name = re.split(r"[\\/]", path.rstrip("\\/"))[-1].strip()
    return name or None


def _is_local(path: str) -> bool:
    return bool(_WINDOWS_DRIVE.match(path)) or path.startswith(("\\\\", "/", "~"))


def host_of(path: str | None) -> str | None:
    """The lower-case host of a URL (with or without scheme); None for local paths."""
    if not path or not path.strip():
        return None
    path = path.strip()
    if _is_local(path) or path.lower().startswith("file:"):
        return None
    try:
        host = urllib.parse.urlsplit(path if _SCHEME.match(path) else "//" + path).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() or None if host else None


def base_document_path(path: str | None) -> str | None:
    """The base document of a document path.

    URLs give the last three labels of their host (no port, path, query or
    fragment; IP addresses and ``localhost`` as they are); ``file://`` URLs and
    local paths (POSIX, Windows drive or UNC) give the file name with extension.
    """
    if not path or not path.strip():
        return None
    path = path.strip()
    if _is_local(path):
        return _file_name(path)
    if path.lower().startswith("file:"):
        return _file_name(urllib.parse.unquote(urllib.parse.urlsplit(path).path))
    host = host_of(path)
    if not host:
        return _file_name(path)
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return ".".join([label for label in host.split(".") if label][-3:]) or None


def activity_window(windows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The focused window, else the most visible (then largest) one; None = away."""
    if not windows:
        return None
    for window in windows:
        if window.get("isFocused"):
            return window
    return max(
        windows,
        key=lambda w: (w.get("visiblePercentage") or 0.0, w.get("screenPercentage") or 0.0),
    )


@dataclass(frozen=True)
class CategoryRule:
    """A category and what puts activity into it."""

    uuid: str
    name: str
    applications: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()


def _domain_matches(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def categorize(
    application: str | None,
    host: str | None,
    rules: Sequence[CategoryRule],
) -> str | None:
    """The category uuid: the first rule (in order) whose domain matches, else the
    first whose application matches. Domains win so that a browser on github.com
    counts as development, not browsing."""
    if host:
        for rule in rules:
            if any(_domain_matches(host, d) for d in rule.domains):
                return rule.uuid
    if application:
        for rule in rules:
            if application in rule.applications:
                return rule.uuid
    return None


@dataclass(frozen=True)
class ProjectRules:
    """One project's matching rules, prepared for fast matching."""

    uuid: str
    depth: int
    local_paths: tuple[str, ...]
    contact_emails: tuple[tuple[str, re.Pattern[str]], ...]
    keywords: tuple[tuple[str, re.Pattern[str]], ...]


def _norm_path(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").lower()


def prepare_projects(projects: Mapping[str, Mapping[str, Any]]) -> list[ProjectRules]:
    """Compile a user's projects (as stored) into rules, deepest projects first."""

    def depth(uuid: str) -> int:
        seen: set[str] = set()
        current = projects[uuid].get("parentProject")
        level = 0
        while isinstance(current, str) and current in projects and current not in seen:
            seen.add(current)
            level += 1
            current = projects[current].get("parentProject")
        return level

    prepared = [
        ProjectRules(
            uuid=uuid,
            depth=depth(uuid),
            local_paths=tuple(
                p for p in (_norm_path(x) for x in project.get("localPaths", [])) if p
            ),
            contact_emails=tuple(
                (e.lower(), re.compile(r"(?<![\w.+-])" + re.escape(e) + r"(?![\w-]|\.\w)", re.I))
                for e in project.get("contactEmails", [])
            ),
            keywords=tuple(
                (k, re.compile(r"(?<!\w)" + re.escape(k) + r"(?!\w)", re.IGNORECASE))
                for k in project.get("keywords", [])
            ),
        )
        for uuid, project in projects.items()
    ]
    prepared.sort(key=lambda r: (-r.depth, r.uuid))
    return prepared


@dataclass
class Texts:
    """The texts of a window that project rules look at."""

    title: str = ""
    document_paths: list[str] = field(default_factory=list)
    document_titles: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, window: Mapping[str, Any]) -> Texts:
        documents = window.get("documents") or []
        return cls(
            title=window.get("title") or "",
            document_paths=[d.get("path") or "" for d in documents],
            document_titles=[d.get("title") or "" for d in documents],
            tags=list((window.get("tags") or {}).keys()),
        )

    def places(self) -> Iterable[tuple[str, str]]:
        yield "window title", self.title
        for path in self.document_paths:
            yield "document path", path
        for title in self.document_titles:
            yield "document title", title
        for tag in self.tags:
            yield "tags", tag


def attribute_project(rules: Sequence[ProjectRules], texts: Texts) -> tuple[str | None, str | None]:
    """The project and the reason, by rule kind in order: local path prefix, contact
    email, keyword (whole word, any case). Within a kind the most specific (deepest)
    project wins; ``rules`` come deepest first."""
    paths = [_norm_path(p) for p in texts.document_paths if p]
    for rule in rules:
        for local in rule.local_paths:
            for path in paths:
                if path == local or path.startswith(local + "/"):
                    return rule.uuid, f"file part '{local}' was found in document path"
    places = list(texts.places())
    for rule in rules:
        for email, pattern in rule.contact_emails:
            for where, text in places:
                if pattern.search(text):
                    return rule.uuid, f"contact email '{email}' was found in {where}"
    for rule in rules:
        for keyword, pattern in rule.keywords:
            for where, text in places:
                if pattern.search(text):
                    return rule.uuid, f"keyword '{keyword}' was found in {where}"
    return None, None


@dataclass(frozen=True)
class Attribution:
    """What one snapshot is attributed to."""

    application: str | None
    application_uuid: str | None
    base_document: str | None
    category_uuid: str | None
    project_uuid: str | None
    reason: str | None
    title: str
    process: str


@dataclass(frozen=True)
class StatedAttribution:
    """The rule-made part of an attribution, as stored (a restore carries it so
    that a snapshot keeps it whatever the rules are now)."""

    project_uuid: str | None
    category_uuid: str | None
    reason: str | None

    def applied_to(self, a: Attribution) -> Attribution:
        """``a`` (from the snapshot's window) with this project, category and reason."""
        return dataclasses.replace(
            a, project_uuid=self.project_uuid, category_uuid=self.category_uuid, reason=self.reason
        )


class Attributor:
    """Attribution with one user's rules, built once per request batch.

    Args:
        projects: the user's projects as stored (uuid -> project).
        categories: the category rules in priority order (user rules first).
        learned: associations learned from the user's corrections.
        min_score: how sure the associations must be to attribute.
    """

    def __init__(
        self,
        projects: Mapping[str, Mapping[str, Any]],
        categories: Sequence[CategoryRule],
        learned: Mapping[str, Association] | None = None,
        min_score: int = 3,
    ) -> None:
        self._project_map = projects
        self._projects = prepare_projects(projects)
        self._categories = categories
        self._learned = learned or {}
        self._min_score = min_score

    def attribute(self, window: Mapping[str, Any]) -> Attribution:
        """Attribute the activity window of a snapshot."""
        app = application_name(window.get("processName"))
        documents = window.get("documents") or []
        first_path = next((d.get("path") for d in documents if d.get("path")), None)
        project, reason = attribute_project(self._projects, Texts.of(window))
        base_document = base_document_path(first_path)
        if project is None and self._learned:
            # What corrections taught applies only where no explicit rule claims it.
            keys = features([base_document], [app], [window.get("title") or ""])
            suggested = suggest(self._learned, keys, self._project_map, self._min_score)
            if suggested:
                project, reason = suggested
        return Attribution(
            application=app,
            application_uuid=application_uuid(app) if app else None,
            base_document=base_document,
            category_uuid=categorize(app, host_of(first_path), self._categories),
            project_uuid=project,
            reason=reason,
            title=window.get("title") or "",
            process=window.get("processName") or "",
        )
