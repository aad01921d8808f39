"""Writing each lead's outcome back to its Salesforce record."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from syncd.config.base import FIELD_NAME, StrictModel
from syncd.domain.writeback import WritebackFields

#: Lead states a write-back may report (``held`` is the blast-radius guard's state).
WRITEBACK_STATES = (
    "accepted",
    "rejected",
    "uncertain",
    "failed",
    "skipped",
    "invalid",
    "held",
)
WritebackState = Literal[
    "accepted", "rejected", "uncertain", "failed", "skipped", "invalid", "held"
]


class WritebackFieldsConfig(StrictModel):
    """Fields of the synced object that receive a lead's outcome; any subset."""

    status: str | None = Field(default=None, pattern=FIELD_NAME.pattern)
    """Text or picklist field that receives the lead's state (e.g. SimZ_Status__c)."""
    batch_id: str | None = Field(default=None, pattern=FIELD_NAME.pattern)
    """Text field that receives the SimZ batchId, when SimZ returned one."""
    sent_at: str | None = Field(default=None, pattern=FIELD_NAME.pattern)
    """Datetime field that receives the time the lead's batch was sent."""
    error: str | None = Field(default=None, pattern=FIELD_NAME.pattern)
    """Text field that receives the rejection or failure (code: message), cut to its length."""

    def names(self) -> dict[str, str]:
        """Value kind -> field API name, for the fields that are set."""
        return self.spec.names()

    @property
    def spec(self) -> WritebackFields:
        """The fields as the domain's write-back functions take them."""
        return WritebackFields(self.status, self.batch_id, self.sent_at, self.error)


class WritebackConfig(StrictModel):
    """Write each lead's outcome back to its Salesforce record (sObject Collections update)."""

    fields: WritebackFieldsConfig
    """Which fields receive the outcome; at least one."""
    states: list[WritebackState] = Field(
        default=["accepted", "rejected", "uncertain", "failed"],
        min_length=1,
        description="Lead states whose outcome is written back.",
    )

    @model_validator(mode="after")
    def _some_field(self) -> WritebackConfig:
        names = list(self.fields.names().values())
        if not names:
            raise ValueError("set at least one of fields.status, batch_id, sent_at and error")
        folded = [name.lower() for name in names]
        if len(set(folded)) != len(folded):
            raise ValueError("each write-back value needs its own field")
        return self
