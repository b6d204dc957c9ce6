"""Common pydantic base for every event model: strict about unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
