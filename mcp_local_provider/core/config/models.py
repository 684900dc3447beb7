"""The ``[models]`` table: names editors ask for, mapped onto the models agents serve."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcp_local_provider.core.names import MODEL_NAME_PATTERN

#: What to do with a request's tools when the model's agent does not declare ``tools``:
#: ``drop`` answers in text (and refuses a forced call), ``reject`` refuses the request,
#: ``emulate`` passes the tools on anyway (for agents that handle them without declaring it).
ToolsMode = Literal["emulate", "drop", "reject"]


class ModelsConfig(BaseModel):
    """The ``[models]`` table: how model names editors ask for map onto agents' models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="extra model names, each mapped onto a model an agent serves",
    )
    default_context_length: int = Field(
        32768, ge=256, description="context length shown for models whose agent gives none"
    )

    tools: ToolsMode = Field(
        "drop",
        description="tools sent to a model whose agent does not declare tool calls: "
        "drop (answer in text; a forced call is refused), reject, or emulate (pass them on)",
    )
    tools_per_model: dict[str, ToolsMode] = Field(
        default_factory=dict,
        description="the same choice for single models, by name (an agent's name or an alias)",
    )

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, value: dict[str, str]) -> dict[str, str]:
        for alias, target in value.items():
            for name in (alias, target):
                if not MODEL_NAME_PATTERN.match(name):
                    raise ValueError(
                        f"{name!r} is not a model name (1-200 letters, digits and . _ : @ / + -)"
                    )
        return value
