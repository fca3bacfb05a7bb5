"""References to secrets: config names an environment variable or a key file, never the value.

A reference is written in TOML as ``{ env = "NAME" }`` or ``{ file = "path/to/key" }``. Relative
file paths resolve against the gateway's base directory (the working directory by default).
Resolution happens once, in the composition root; values are never logged.
"""

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from gateway.errors import ConfigError


class SecretRef(BaseModel):
    """Where a secret lives: exactly one of ``env`` or ``file``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str | None = None
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: object) -> object:
        if isinstance(value, str):
            # Never echo the value: it may be a real secret pasted by mistake.
            raise ValueError(
                'secrets are never written inline; use { env = "NAME" } or { file = "path" }'
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
        if (self.env is None) == (self.file is None):
            raise ValueError('give exactly one of env = "NAME" or file = "path"')
        return self

    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"

    def resolve(self, base_dir: Path, environ: Mapping[str, str] | None = None) -> str:
        """Return the secret's text, stripped. Raises ConfigError naming where it looked."""
        if self.env is not None:
            value = (os.environ if environ is None else environ).get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set")
            return value.strip()
        assert self.file is not None
        path = Path(self.file)
        if not path.is_absolute():
            path = base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(
                f"key file {path} does not exist (run `agency-gateway keys generate`)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"key file {path} cannot be read: {exc.strerror}") from exc


__all__ = ["SecretRef"]
