"""Configuration of a law firm reached by email (the ``[email]`` section of its agency file)."""

from pydantic import BaseModel, ConfigDict


class EmailSection(BaseModel):
    """How referral mail is sent to the firm and how its replies are read."""

    model_config = ConfigDict(frozen=True, extra="forbid")


__all__ = ["EmailSection"]
