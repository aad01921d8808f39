"""Record writes in the Salesforce emulator, each publishing its change event.

Whoever writes (the control API, a REST ``PATCH``, an sObject Collections
update) goes through here, so a record never changes without the Pub/Sub
subscribers hearing of it. Each write and its event happen under the store's
lock: a subscriber never sees an event before a query can see the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from syncd.sandbox.sf_events import EventBus
from syncd.sandbox.sf_soql import TYPE_KEY, to_json_value
from syncd.sandbox.sf_store import RecordStore

#: sobject -> [(record id, the values the event carries)]
Groups = dict[str, list[tuple[str, dict[str, Any]]]]


def public_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record as the control API shows it: JSON values and its ``sobject``."""
    out = {k: to_json_value(v) for k, v in record.items() if k != TYPE_KEY}
    out["sobject"] = record[TYPE_KEY]
    return out


class RecordWriter:
    """Changes records in ``store`` and publishes what changed on ``bus``."""

    def __init__(self, store: RecordStore, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    def add(self, records: Iterable[Mapping[str, Any]], *, publish: bool = True) -> list[str]:
        """Insert records (or update those whose Id exists); one CREATE or UPDATE each.

        ``publish=False`` publishes nothing: a record that comes to match a query
        without a change event, as a formula field's new value or a sharing
        change does in an org (with an old ``SystemModstamp``, no poll reads it).
        """
        batch = [dict(record) for record in records]
        with self.store.lock:
            existed = self._existing(batch)
            ids = self.store.add(batch)
            if not publish:
                return ids
            created, updated, changed = self._group(ids, batch, existed)
            for sobject, group in created.items():
                self.bus.publish_change(sobject, self.store.fields(sobject), "CREATE", group)
            for sobject, group in updated.items():
                self.bus.publish_change(
                    sobject, self.store.fields(sobject), "UPDATE", group, changed=changed[sobject]
                )
        return ids

    def _existing(self, batch: list[dict[str, Any]]) -> set[str]:
        return {
            str(record["Id"])
            for record in batch
            if isinstance(record.get("Id"), str) and self.store.lookup(str(record["Id"]))
        }

    def _group(
        self, ids: list[str], batch: list[dict[str, Any]], existed: set[str]
    ) -> tuple[Groups, Groups, dict[str, set[str]]]:
        """Created and updated records by sobject, and the fields each update changed."""
        created: Groups = {}
        updated: Groups = {}
        changed: dict[str, set[str]] = {}
        for record_id, raw in zip(ids, batch, strict=True):
            stored = self.store.lookup(record_id)
            assert stored is not None
            sobject = stored[TYPE_KEY]
            if record_id in existed or raw.get("Id") in existed:
                values = {k: stored.get(k) for k in raw if k not in ("sobject", "Id")}
                updated.setdefault(sobject, []).append((record_id, values))
                changed.setdefault(sobject, set()).update(values)
            else:
                created.setdefault(sobject, []).append((record_id, dict(stored)))
        return created, updated, changed

    def update(
        self,
        sobject: str,
        record_id: str,
        fields: Mapping[str, Any],
        system_modstamp: datetime | str | None = None,
        *,
        publish: bool = True,
    ) -> dict[str, Any]:
        """Change a record as a user would; ``system_modstamp`` back-dates it.

        ``publish=False``: no change event (see :meth:`add`).
        """
        with self.store.lock:
            record = self.store.update(sobject, record_id, fields, system_modstamp)
            if publish:
                self.publish_update(record, fields)
        return public_record(record)

    def patch(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change a record as the API user would (checked like Salesforce checks it)."""
        with self.store.lock:
            record = self.store.patch(sobject, record_id, fields)
            self.publish_update(record, fields)
        return record

    def publish_update(self, record: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        sobject = record[TYPE_KEY]
        infos = self.store.fields(sobject)
        names = [infos[name.lower()].name for name in fields if name.lower() in infos]
        values = {name: record.get(name) for name in names}
        self.bus.publish_change(
            sobject, infos, "UPDATE", [(record["Id"], values)], changed=[*names, "LastModifiedDate"]
        )

    def set_deleted(
        self, sobject: str, record_id: str, deleted: bool, change: str
    ) -> dict[str, Any]:
        """Move a record to the recycle bin or back; publishes ``change`` with its fields."""
        canonical = self.store.object_name(sobject) or sobject
        with self.store.lock:
            record = self.store.set_deleted(canonical, record_id, deleted)
            self.bus.publish_change(
                canonical, self.store.fields(canonical), change, [(record["Id"], dict(record))]
            )
        return public_record(record)
