"""Projects and tasks in Redis, one hash per user for each.

``{u:<user>}:projects`` maps project uuid -> JSON, so the attribution reads all of
a user's projects (paths, emails, keywords, nesting) in one ``HGETALL``.
``{u:<user>}:tasks`` does the same for tasks. Changes that touch several entries
(re-parenting, moving tasks) run as one optimistic transaction (WATCH/MULTI, both
keys on the user's slot), so
concurrent requests never create a cycle or orphan a task.

Another user's project or task is reported as not found: ids are never confirmed
to exist for anyone but their owner.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from typing import Any

from screenaware.errors import Conflict, Invalid, NotFound
from screenaware.storage.redisstore import RedisStore, optimistic, user_scoped

Project = dict[str, Any]
Task = dict[str, Any]

PROJECT_FIELDS = ("name", "parentProject", "localPaths", "contactEmails", "keywords")


def projects_key(user_uuid: str) -> str:
    return user_scoped(user_uuid, "projects")


def tasks_key(user_uuid: str) -> str:
    return user_scoped(user_uuid, "tasks")


def check_parent(projects: dict[str, Project], project_uuid: str, parent: str | None) -> None:
    """Raise :class:`Invalid` unless ``parent`` may be the parent of ``project_uuid``.

    The parent must be one of the same user's projects, and no project may end up
    among its own ancestors.
    """
    if parent is None:
        return
    if parent not in projects:
        raise Invalid(
            "parentProject must be one of your projects",
            {"parentProject": ["Unknown project."]},
        )
    current: str | None = parent
    seen: set[str] = set()
    while current is not None and current not in seen:
        if current == project_uuid:
            raise Invalid(
                "parentProject would make the project its own ancestor",
                {"parentProject": ["Cycle."]},
            )
        seen.add(current)
        current = projects.get(current, {}).get("parentProject")


def children_after_delete(projects: dict[str, Project], deleted: str) -> dict[str, Project]:
    """The children of ``deleted``, re-parented to its parent (their grandparent)."""
    grandparent = projects[deleted].get("parentProject")
    return {
        uuid: {**project, "parentProject": grandparent}
        for uuid, project in projects.items()
        if project.get("parentProject") == deleted
    }


def public_project(project: Project, user_uuid: str) -> Project:
    """The API shape: ``uuid`` and, as in the GET example, the same value as ``id``."""
    return {
        "uuid": project["uuid"],
        "id": project["uuid"],
        "name": project["name"],
        "userUuid": user_uuid,
        "parentProject": project.get("parentProject"),
        "localPaths": project.get("localPaths", []),
        "contactEmails": project.get("contactEmails", []),
        "keywords": project.get("keywords", []),
    }


def _decode(raw: dict[Any, Any]) -> dict[str, Any]:
    return {key: json.loads(value) for key, value in raw.items()}


class ProjectStore(RedisStore):
    """A user's projects and tasks.

    Args:
        redis: zero-argument callable returning the open Redis client.
    """

    # --- projects ---------------------------------------------------------

    async def projects(self, user_uuid: str) -> dict[str, Project]:
        """All of a user's projects by uuid, in one read."""
        return _decode(await self._redis.hgetall(projects_key(user_uuid)))

    async def project(self, user_uuid: str, project_uuid: str) -> Project:
        raw = await self._redis.hget(projects_key(user_uuid), project_uuid)
        if raw is None:
            raise NotFound("Project not found")
        return dict(json.loads(raw))

    async def create_project(self, user_uuid: str, data: dict[str, Any]) -> Project:
        """Store a new project; its uuid is generated unless given."""
        key = projects_key(user_uuid)
        project_uuid = data.get("uuid") or str(uuidlib.uuid4())
        project = {"uuid": project_uuid, **{f: data.get(f) for f in PROJECT_FIELDS}}
        for field in ("localPaths", "contactEmails", "keywords"):
            project[field] = project[field] or []

        async def body(pipe: Any) -> Project:
            if await pipe.hexists(key, project_uuid):
                raise Conflict("A project with this uuid exists already")
            check_parent(_decode(await pipe.hgetall(key)), project_uuid, project["parentProject"])
            pipe.multi()
            pipe.hset(key, project_uuid, json.dumps(project))
            return project

        return await optimistic(self._redis, [key], body)

    async def update_project(
        self, user_uuid: str, project_uuid: str, changes: dict[str, Any]
    ) -> Project:
        """Replace the fields given in ``changes``; others stay."""
        key = projects_key(user_uuid)

        async def body(pipe: Any) -> Project:
            projects = _decode(await pipe.hgetall(key))
            if project_uuid not in projects:
                raise NotFound("Project not found")
            project = {**projects[project_uuid], **changes, "uuid": project_uuid}
            if "parentProject" in changes:
                check_parent(projects, project_uuid, project["parentProject"])
            pipe.multi()
            pipe.hset(key, project_uuid, json.dumps(project))
            return project

        return await optimistic(self._redis, [key], body)

    async def delete_project(self, user_uuid: str, project_uuid: str) -> Project:
        """Delete a project; its children move to its parent, and so do its tasks
        (tasks of a top-level project are deleted with it). Returns it as it was."""
        pkey, tkey = projects_key(user_uuid), tasks_key(user_uuid)

        async def body(pipe: Any) -> Project:
            projects = _decode(await pipe.hgetall(pkey))
            if project_uuid not in projects:
                raise NotFound("Project not found")
            old: Project = projects[project_uuid]
            children = children_after_delete(projects, project_uuid)
            tasks = _decode(await pipe.hgetall(tkey))
            orphans = {u: t for u, t in tasks.items() if t["projectUuid"] == project_uuid}
            parent = old.get("parentProject")
            pipe.multi()
            pipe.hdel(pkey, project_uuid)
            for child_uuid, child in children.items():
                pipe.hset(pkey, child_uuid, json.dumps(child))
            for task_uuid, task in orphans.items():
                if parent is None:
                    pipe.hdel(tkey, task_uuid)
                else:
                    pipe.hset(tkey, task_uuid, json.dumps({**task, "projectUuid": parent}))
            return old

        return await optimistic(self._redis, [pkey, tkey], body)

    # --- tasks ------------------------------------------------------------

    async def tasks(self, user_uuid: str) -> dict[str, Task]:
        return _decode(await self._redis.hgetall(tasks_key(user_uuid)))

    async def task(self, user_uuid: str, task_uuid: str) -> Task:
        raw = await self._redis.hget(tasks_key(user_uuid), task_uuid)
        if raw is None:
            raise NotFound("Task not found")
        return dict(json.loads(raw))

    async def save_task(
        self, user_uuid: str, data: dict[str, Any], task_uuid: str | None = None
    ) -> Task:
        """Create a task (``task_uuid`` None) or change an existing one."""
        pkey, tkey = projects_key(user_uuid), tasks_key(user_uuid)
        creating = task_uuid is None
        target = task_uuid or data.get("uuid") or str(uuidlib.uuid4())

        async def body(pipe: Any) -> Task:
            existing = await pipe.hget(tkey, target)
            if creating and existing is not None:
                raise Conflict("A task with this uuid exists already")
            if not creating and existing is None:
                raise NotFound("Task not found")
            task = {**(json.loads(existing) if existing else {}), **data}
            task.update(uuid=target, userUuid=user_uuid)
            if not await pipe.hexists(pkey, task["projectUuid"]):
                raise Invalid(
                    "projectUuid must be one of your projects",
                    {"projectUuid": ["Unknown project."]},
                )
            pipe.multi()
            pipe.hset(tkey, target, json.dumps(task))
            return task

        return await optimistic(self._redis, [pkey, tkey], body)

    async def delete_task(self, user_uuid: str, task_uuid: str) -> Task:
        task = await self.task(user_uuid, task_uuid)
        if not await self._redis.hdel(tasks_key(user_uuid), task_uuid):
            raise NotFound("Task not found")
        return task
