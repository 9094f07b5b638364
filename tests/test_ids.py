"""Our id helpers are the standard library's, byte for byte."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from screenaware.activity.attribution import NAMESPACE
from screenaware.storage.ids import uuid5_text

namespaces = st.one_of(
    st.sampled_from([uuid.NAMESPACE_URL, uuid.NAMESPACE_DNS, NAMESPACE]),
    st.uuids(),
)
# Any text that encodes as UTF-8 (lone surrogates make both raise).
names = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)


@settings(max_examples=2000, deadline=None)
@given(namespaces, names)
def test_uuid5_text_is_the_standard_librarys(namespace: uuid.UUID, name: str) -> None:
    assert uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name))


def test_uuid5_text_of_a_snapshot_key() -> None:
    name = "snapshot:u:1764576000000:" + "ab" * 32
    assert uuid5_text(uuid.NAMESPACE_URL, name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    assert uuid.UUID(uuid5_text(uuid.NAMESPACE_URL, name)).version == 5
