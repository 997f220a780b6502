"""The base of every recipe section: strict, closed, checked on assignment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    # strict: a TOML string where a number belongs is an error, never a coercion (a coerced
    # value would train under the same run id as the number)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


def one_line(exc: ValidationError, prefix: str = "", hint: str = "") -> str:
    """The first problem of ``exc`` as ``field.path: what is wrong (got value)``.

    ``prefix`` is where the validated mapping sits in the recipe (a section
    validated on its own); ``hint`` follows an "unknown key" message.
    """
    err = exc.errors()[0]
    field = ".".join([p for p in [prefix] if p] + [str(p) for p in err["loc"]]) or "recipe"
    msg = "unknown key" + hint if err["type"] == "extra_forbidden" else err["msg"]
    got = err.get("input")
    suffix = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return f"{field}: {msg}{suffix}"
