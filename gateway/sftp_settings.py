"""Configuration of an SFTP agency (the ``[sftp]`` section of its agency file)."""

from pydantic import BaseModel, ConfigDict


class SftpSection(BaseModel):
    """Where and how files are exchanged with the agency."""

    model_config = ConfigDict(frozen=True, extra="forbid")


__all__ = ["SftpSection"]
