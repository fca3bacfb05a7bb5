"""``[cluster]``: many ``serve`` processes on one PostgreSQL database (README "Deployment").

Pure pydantic, like the rest of ``gateway.config``.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ClusterSection(BaseModel):
    """How the processes of one deployment share the roles only one may hold at a time (the
    schedulers and pollers, the evidence sequencer, an allocation round)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lease_seconds: float = Field(
        default=15,
        ge=1,
        le=3600,
        description="a role's lease: its holder renews it every third of this; another "
        "process takes the role over this long after its holder died",
    )
    stage_evidence: bool = Field(
        default=True,
        description="on PostgreSQL, writers stage evidence leaves without the log's lock and "
        "one process sequences them",
    )
    sequence_every_seconds: float = Field(
        default=0.2,
        gt=0,
        description="how often the sequencer looks for staged leaves when it found none",
    )

    @model_validator(mode="after")
    def _renewable(self) -> "ClusterSection":
        if self.sequence_every_seconds >= self.lease_seconds:
            raise ValueError("sequence_every_seconds must be shorter than lease_seconds")
        return self


__all__ = ["ClusterSection"]
