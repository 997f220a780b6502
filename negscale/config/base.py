"""The base of every recipe section: strict, closed, checked on assignment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # strict: a TOML string where a number belongs is an error, never a coercion (a coerced
    # value would train under the same run id as the number)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)
