"""Attribution rules and the URL / path parsers, as plain functions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screenaware.activity.attribution import (
    Attributor,
    CategoryRule,
    Texts,
    activity_window,
    application_name,
    application_uuid,
    attribute_project,
    base_document_path,
    categorize,
    category_uuid,
    prepare_projects,
)
from screenaware.activity.catalogue import BUILTIN_CATEGORIES
from screenaware.activity.snapshots import window_identity


@pytest.mark.parametrize(
    ("path", "base"),
    [
        ("http://graphicriver.net/category/presentation-templates/powerpoint", "graphicriver.net"),
        ("https://a.b.www.example.co.uk:8443/x?q=1#frag", "example.co.uk"),
        ("https://www.google.com/search?q=x", "www.google.com"),
        ("https://GitHub.com/org/repo", "github.com"),
        ("http://127.0.0.1:8080/admin", "127.0.0.1"),
        ("http://[::1]:3000/", "::1"),
        ("http://localhost:3000/app", "localhost"),
        ("www.example.org/page", "www.example.org"),
        ("file:///home/ann/My%20Notes.md", "My Notes.md"),
        ("file:///C:/Users/ann/report.docx", "report.docx"),
        ("C:\\Users\\ann\\Documents\\budget.xlsx", "budget.xlsx"),
        ("c:/myprojects/screenaware/main.py", "main.py"),
        ("\\\\fileserver\\share\\plans\\plan.pptx", "plan.pptx"),
        ("/home/ann/src/app.py", "app.py"),
        ("~/notes.txt", "notes.txt"),
        ("", None),
        (None, None),
        ("   ", None),
    ],
)
def test_base_document_path(path: str | None, base: str | None) -> None:
    assert base_document_path(path) == base


@given(st.text(max_size=300))
def test_base_document_path_never_raises(text: str) -> None:
    result = base_document_path(text)
    assert result is None or (isinstance(result, str) and result)


@pytest.mark.parametrize(
    ("process", "name"),
    [
        ("chrome.exe", "chrome"),
        ("Chrome", "chrome"),
        ("C:\\Program Files\\Google\\Chrome\\chrome.EXE", "chrome"),
        ("/usr/bin/code", "code"),
        ("Safari.app", "safari"),
        ("", None),
        (None, None),
    ],
)
def test_application_name(process: str | None, name: str | None) -> None:
    assert application_name(process) == name


def test_application_ids_are_deterministic() -> None:
    assert application_uuid("chrome") == application_uuid(application_name("chrome.exe") or "")
    assert application_uuid("chrome") != application_uuid("firefox")
    uuid.UUID(application_uuid("chrome"))
    assert category_uuid("Development") == category_uuid("development")


def test_activity_window_prefers_focus_then_visibility() -> None:
    a = {"title": "a", "visiblePercentage": 0.9, "screenPercentage": 0.2}
    b = {"title": "b", "visiblePercentage": 0.5, "isFocused": True}
    c = {"title": "c", "visiblePercentage": 0.9, "screenPercentage": 0.8}
    assert activity_window([a, b, c]) is b
    assert activity_window([a, c]) is c  # tie on visibility: the larger one
    assert activity_window([]) is None


def test_builtin_catalogue_covers_the_required_categories() -> None:
    names = {c.name for c in BUILTIN_CATEGORIES}
    assert {"development", "communication", "office", "browsing", "media", "social",
            "design", "system"} <= names  # fmt: skip
    by_name = {c.name: c.uuid for c in BUILTIN_CATEGORIES}
    assert categorize("code", None, BUILTIN_CATEGORIES) == by_name["development"]
    assert categorize("chrome", None, BUILTIN_CATEGORIES) == by_name["browsing"]
    assert categorize("chrome", "github.com", BUILTIN_CATEGORIES) == by_name["development"]
    assert categorize("chrome", "www.youtube.com", BUILTIN_CATEGORIES) == by_name["media"]
    assert categorize("firefox", "mail.google.com", BUILTIN_CATEGORIES) == by_name["communication"]
    assert categorize("winword", None, BUILTIN_CATEGORIES) == by_name["office"]
    assert categorize("figma", None, BUILTIN_CATEGORIES) == by_name["design"]
    assert categorize("chrome", "reddit.com", BUILTIN_CATEGORIES) == by_name["social"]
    assert categorize("explorer", None, BUILTIN_CATEGORIES) == by_name["system"]
    assert categorize("unknownapp", "unknown.example", BUILTIN_CATEGORIES) is None
    assert categorize(None, None, BUILTIN_CATEGORIES) is None
    # A domain must match whole labels.
    assert categorize("chrome", "notgithub.com", BUILTIN_CATEGORIES) == by_name["browsing"]


def test_user_category_rules_win() -> None:
    mine = CategoryRule(uuid="mine", name="Learning", domains=("youtube.com",))
    rules = [mine, *BUILTIN_CATEGORIES]
    assert categorize("chrome", "www.youtube.com", rules) == "mine"


PROJECTS: dict[str, dict[str, Any]] = {
    "parent": {
        "uuid": "parent",
        "parentProject": None,
        "localPaths": ["C:\\work"],
        "contactEmails": ["boss@client.com"],
        "keywords": ["client"],
    },
    "child": {
        "uuid": "child",
        "parentProject": "parent",
        "localPaths": ["c:/work/screenaware"],
        "contactEmails": [],
        "keywords": ["influxdb", "ScreenAware"],
    },
    "other": {
        "uuid": "other",
        "parentProject": None,
        "localPaths": ["/myProjectFolder"],
        "contactEmails": ["ann@example.org"],
        "keywords": ["c++"],
    },
}


def project_of(**window: object) -> tuple[str | None, str | None]:
    return attribute_project(prepare_projects(PROJECTS), Texts.of(window))


def test_local_path_prefix_and_the_deepest_project_wins() -> None:
    assert project_of(documents=[{"path": "C:\\Work\\ScreenAware\\app.py"}]) == (
        "child",
        "file part 'c:/work/screenaware' was found in document path",
    )
    assert project_of(documents=[{"path": "c:/work/other/x.txt"}])[0] == "parent"
    assert project_of(documents=[{"path": "/myProjectFolder/a/b.txt"}]) == (
        "other",
        "file part '/myprojectfolder' was found in document path",
    )
    # A prefix must end at a directory boundary.
    assert project_of(documents=[{"path": "/myProjectFolderX/b.txt"}]) == (None, None)


def test_rule_kinds_apply_in_order() -> None:
    # A path match beats a keyword match of another project.
    project, reason = project_of(
        title="influxdb notes", documents=[{"path": "/myProjectFolder/notes.txt"}]
    )
    assert project == "other" and reason is not None and reason.startswith("file part")
    # An email beats a keyword.
    project, reason = project_of(title="Re: influxdb from ann@example.org")
    assert (project, reason) == (
        "other",
        "contact email 'ann@example.org' was found in window title",
    )


def test_contact_emails_match_whole_addresses_in_any_case() -> None:
    assert project_of(title="mail from Boss@Client.com")[0] == "parent"
    # Not the address itself (the domain still holds the keyword 'client').
    assert project_of(title="mail from notboss@client.com")[1] == (
        "keyword 'client' was found in window title"
    )
    assert project_of(title="mail from ann@example.org.uk")[0] is None


def test_keywords_are_whole_words_case_insensitive_everywhere() -> None:
    assert project_of(title="Tuning InfluxDB - Chrome") == (
        "child",
        "keyword 'influxdb' was found in window title",
    )
    assert project_of(title="influxdbx")[0] is None
    assert project_of(documents=[{"path": "https://x.org/c++/faq"}])[1] == (
        "keyword 'c++' was found in document path"
    )
    assert project_of(documents=[{"path": "x", "title": "The client meeting"}])[1] == (
        "keyword 'client' was found in document title"
    )
    assert project_of(tags={"screenaware": 3.0})[1] == "keyword 'ScreenAware' was found in tags"
    # Child keyword beats parent keyword in the same text.
    assert project_of(title="client screenaware")[0] == "child"
    assert project_of(title="nothing here") == (None, None)


def test_attributor_puts_it_together() -> None:
    attributor = Attributor(PROJECTS, BUILTIN_CATEGORIES)
    result = attributor.attribute(
        {
            "processName": "chrome.exe",
            "title": "ScreenAware PR - GitHub",
            "documents": [{"path": "https://github.com/org/screenaware/pull/1", "title": "PR"}],
        }
    )
    assert result.application == "chrome"
    assert result.base_document == "github.com"
    assert result.category_uuid == category_uuid("development")
    assert result.project_uuid == "child"
    assert result.reason == "keyword 'ScreenAware' was found in window title"
    away = attributor.attribute({})
    assert (away.application, away.project_uuid, away.category_uuid) == (None, None, None)


_pool = st.sampled_from(
    ["", "ScreenAware", "client notes", "ann@example.org", "C:\\work\\screenaware\\a.py",
     "https://github.com/org/x", "/myProjectFolder/b.txt", "chrome.exe", "code"]
)  # fmt: skip
_windows = st.fixed_dictionaries(
    {},
    optional={
        "processName": st.one_of(st.none(), _pool),
        "title": st.one_of(st.none(), _pool),
        "isFocused": st.booleans(),
        "screenPercentage": st.floats(0, 1),
        "visiblePercentage": st.floats(0, 1),
        "tags": st.dictionaries(_pool.filter(bool), st.floats(-9, 9), max_size=3),
        "documents": st.lists(
            st.fixed_dictionaries({"path": _pool}, optional={"title": st.one_of(st.none(), _pool)}),
            max_size=3,
        ),
    },
)


@given(_windows, _windows)
def test_windows_of_one_identity_get_one_attribution(
    one: dict[str, Any], other: dict[str, Any]
) -> None:
    # The batch attributes each distinct window identity once: what the identity
    # leaves out (focus, shares, tag weights) must not change the attribution.
    attributor = Attributor(PROJECTS, BUILTIN_CATEGORIES)
    same: dict[str, Any] = {
        **other,
        **{k: one[k] for k in ("processName", "title", "documents") if k in one},
    }
    for k in ("processName", "title", "documents"):
        if k not in one:
            same.pop(k, None)
    same["tags"] = {tag: 1.0 for tag in one.get("tags", {})}
    if "tags" not in one:
        del same["tags"]
    assert window_identity(same) == window_identity(one)
    assert attributor.attribute(same) == attributor.attribute(one)
    if window_identity(one) != window_identity(other):
        return
    assert attributor.attribute(one) == attributor.attribute(other)
