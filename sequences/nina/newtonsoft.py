"""Reading the JSON that NINA writes with Newtonsoft.Json's `TypeNameHandling` and
`PreserveReferencesHandling`: objects carry `"$type": "Namespace.Class, Assembly"` and an
`"$id"`; a repeated object is written once and then as `{"$ref": id}`; collections are
`{"$type": ..., "$values": [...]}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sequences.errors import SequenceError


class NinaFormatError(SequenceError):
    """The file is not a NINA sequence JSON document; the message names the place and the
    problem. Callers show it (HTTP 422, a CLI error): nothing was imported."""


@dataclass(frozen=True)
class NinaNode:
    """One object of the document with its `$type` split and its path in NINA's tree
    (`Items[2].Items[0]`, empty for the root)."""

    data: dict[str, Any]
    path: str
    refs: dict[str, dict[str, Any]]

    @property
    def full_type(self) -> str:
        return str(self.data.get("$type") or "")

    @property
    def class_name(self) -> str:
        """The .NET class without its assembly: `NINA.Sequencer.Container.SequentialContainer`."""
        return self.full_type.split(",", 1)[0].strip()

    @property
    def short_type(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]

    def get(self, key: str, default: Any = None) -> Any:
        """A field, with a `$ref` followed (NINA writes shared objects once)."""
        return self._deref(self.data.get(key, default), key)

    def child(self, key: str) -> NinaNode | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise NinaFormatError(f"{self._at(key)}: expected an object, found {value!r:.60}")
        return NinaNode(value, self._at(key), self.refs)

    def children(self, key: str) -> list[NinaNode]:
        """The objects of a collection field (`{"$values": [...]}` or a plain list)."""
        return collection(self.get(key), self._at(key), self.refs)

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _deref(self, value: Any, key: str) -> Any:
        if isinstance(value, dict) and "$ref" in value:
            ref = str(value["$ref"])
            if ref not in self.refs:
                raise NinaFormatError(f"{self._at(key)}: $ref {ref!r} names no object ($id)")
            return self.refs[ref]
        return value


def collection(value: Any, path: str, refs: dict[str, dict[str, Any]]) -> list[NinaNode]:
    """The nodes of a Newtonsoft collection at `path`; NinaFormatError if it is not one."""
    if isinstance(value, dict) and "$ref" in value:
        value = refs.get(str(value["$ref"]))
    if value is None:
        return []
    if isinstance(value, dict):
        if "$values" not in value:
            raise NinaFormatError(f"{path or 'the document'}: expected a list ($values)")
        value = value["$values"]
    if not isinstance(value, list):
        raise NinaFormatError(f"{path or 'the document'}: expected a list, found {value!r:.60}")
    nodes = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and "$ref" in item:
            item = refs.get(str(item["$ref"]), item)
        if not isinstance(item, dict):
            raise NinaFormatError(f"{path}[{i}]: expected an object, found {item!r:.60}")
        nodes.append(NinaNode(item, f"{path}[{i}]", refs))
    return nodes


def read_document(text: str | bytes) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Parse the JSON and index every object by its `$id`; NinaFormatError when it is not
    JSON or has no NINA `$type` at its top."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NinaFormatError(f"not JSON: {e}") from e
    refs: dict[str, dict[str, Any]] = {}
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "$id" in value:
                refs[str(value["$id"])] = value
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    top = data.get("$values") if isinstance(data, dict) and "$values" in data else data
    if isinstance(top, list):
        if not all(isinstance(item, dict) and "$type" in item for item in top):
            raise NinaFormatError("a list whose items are not NINA objects (no $type)")
    elif not isinstance(top, dict) or "$type" not in top:
        raise NinaFormatError(
            'no "$type" at the top: not a NINA Advanced Sequencer file '
            "(export a template or save the sequence from NINA's Advanced Sequencer)"
        )
    return data, refs
