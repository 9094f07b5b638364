"""Associations learned from corrections: features of a stream -> a project.

A correction of a stream to project P teaches each of its features (base
documents, applications, title words) that it means P. A feature remembers only
its latest project and how many corrections in a row chose it, so correcting
back and forth converges to the latest choice instead of oscillating.

A new snapshot that no explicit rule claims is attributed from these when the
features of the winning project score at least ``min_score`` and more than any
other project: a base document counts 3 per correction, an application or a
title word 1.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from screenaware.storage.redisstore import RedisStore, user_scoped

WEIGHTS = {"doc": 3, "app": 1, "word": 1}
_WORD = re.compile(r"[^\W\d_][\w'-]{3,}", re.UNICODE)
# Words in nearly every title say nothing about the project.
_STOPWORDS = frozenset(
    "google chrome mozilla firefox microsoft edge safari visual studio code with from "
    "this that your have what when where which about into untitled document window "
    "new tab page home inbox mail".split()
)
MAX_WORDS = 20


def learn_key(user: str) -> str:
    return user_scoped(user, "learn")


def title_words(title: str, application: str | None = None) -> list[str]:
    """The telling words of a title, lower case, in order, without duplicates."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(title or ""):
        word = match.group().lower()
        if word not in _STOPWORDS and word != application:
            seen.setdefault(word, None)
    return list(seen)


def features(
    documents: Iterable[str | None],
    applications: Iterable[str | None],
    titles: Iterable[str],
    application_names: Mapping[str, str] | None = None,
) -> list[str]:
    """Feature keys (``doc:…``, ``app:…``, ``word:…``) of a set of activity."""
    names = application_names or {}
    out: dict[str, None] = {}
    for doc in documents:
        if doc:
            out.setdefault(f"doc:{doc.lower()}", None)
    for app in applications:
        if app:
            out.setdefault(f"app:{app}", None)
    counts: Counter[str] = Counter()
    for title in titles:
        counts.update(title_words(title))
    for word, _ in counts.most_common(MAX_WORDS):
        if word not in names.values():
            out.setdefault(f"word:{word}", None)
    return list(out)


@dataclass(frozen=True)
class Association:
    project: str
    count: int


def teach(
    current: Mapping[str, Association], keys: Iterable[str], project: str
) -> dict[str, Association]:
    """The associations after a correction to ``project``: the same project counts
    up, a different one starts over at one."""
    taught = {}
    for key in keys:
        before = current.get(key)
        count = before.count + 1 if before and before.project == project else 1
        taught[key] = Association(project, count)
    return taught


def suggest(
    learned: Mapping[str, Association],
    keys: Iterable[str],
    projects: Mapping[str, Any],
    min_score: int,
) -> tuple[str, str] | None:
    """The project the features point to and the reason, if confident enough."""
    scores: dict[str, int] = defaultdict(int)
    best_feature: dict[str, tuple[int, str, int]] = {}
    for key in keys:
        assoc = learned.get(key)
        if assoc is None or assoc.project not in projects:
            continue  # unknown, or its project was deleted
        weight = WEIGHTS[key.split(":", 1)[0]] * assoc.count
        scores[assoc.project] += weight
        if weight > best_feature.get(assoc.project, (0, "", 0))[0]:
            best_feature[assoc.project] = (weight, key.split(":", 1)[1], assoc.count)
    if not scores:
        return None
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    project, score = ranked[0]
    if score < min_score or (len(ranked) > 1 and ranked[1][1] == score):
        return None
    _, value, count = best_feature[project]
    noun = "correction" if count == 1 else "corrections"
    return project, f"learned from {count} {noun}: '{value}'"


def decode(raw: Mapping[Any, Any]) -> dict[str, Association]:
    out = {}
    for key, value in raw.items():
        data = json.loads(value)
        out[str(key)] = Association(data["project"], int(data["count"]))
    return out


class LearningStore(RedisStore):
    """Per-user associations in one Redis hash (feature -> project and count).

    Args:
        redis: zero-argument callable returning the open Redis client.
    """

    async def learn(self, user: str, keys: list[str], project: str | None) -> None:
        """Teach ``keys`` that they mean ``project``; None forgets them."""
        if not keys:
            return
        key = learn_key(user)
        if project is None:
            await self._redis.hdel(key, *keys)
            return
        found = zip(keys, await self._redis.hmget(key, keys), strict=True)
        current = decode({k: v for k, v in found if v is not None})
        taught = teach(current, keys, project)
        async with self._redis.pipeline(transaction=True) as pipe:
            for feature, assoc in taught.items():
                pipe.hset(
                    key, feature, json.dumps({"project": assoc.project, "count": assoc.count})
                )
            await pipe.execute()

    async def all(self, user: str) -> dict[str, Association]:
        """Every association of the user (for export)."""
        return decode(await self._redis.hgetall(learn_key(user)))

    async def restore(self, user: str, learned: Mapping[str, Association]) -> None:
        """Store associations as they are (restoring an export), replacing those keys."""
        if not learned:
            return
        await self._redis.hset(
            learn_key(user),
            mapping={
                k: json.dumps({"project": a.project, "count": a.count}) for k, a in learned.items()
            },
        )

    async def for_project(self, user: str, project: str) -> list[dict[str, Any]]:
        """What was learned for one project."""
        learned = decode(await self._redis.hgetall(learn_key(user)))
        found = [
            {"kind": k.split(":", 1)[0], "value": k.split(":", 1)[1], "count": a.count}
            for k, a in learned.items()
            if a.project == project
        ]
        return sorted(
            found, key=lambda f: (-f["count"] * WEIGHTS[f["kind"]], f["kind"], f["value"])
        )

    async def forget_project(self, user: str, project: str) -> int:
        """Forget every association to ``project``; returns how many."""
        learned = decode(await self._redis.hgetall(learn_key(user)))
        keys = [k for k, a in learned.items() if a.project == project]
        if keys:
            await self._redis.hdel(learn_key(user), *keys)
        return len(keys)
