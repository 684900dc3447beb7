"""The ``[models]`` table: names editors ask for, mapped onto the models agents serve."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_local_provider.core.names import MODEL_NAME_PATTERN

#: What to do with a request's tools when the model's agent does not declare ``tools``:
#: ``drop`` answers in text (and refuses a forced call), ``reject`` refuses the request,
#: ``emulate`` passes the tools on anyway (for agents that handle them without declaring it).
ToolsMode = Literal["emulate", "drop", "reject"]
#: How the router picks among the sessions that may take a call.
Routing = Literal["least-busy", "round-robin", "fill-first"]


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

    fallbacks: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="models tried in order when no session of a model can take a request "
        '([models.fallbacks] table, e.g. "claude-code" = ["codex", "gemini-cli"])',
    )
    routing: Routing = Field(
        "least-busy",
        description="how a session is picked among those that may take a call: least-busy, "
        "round-robin or fill-first (requests of one conversation stay on its session)",
    )
    failover_attempts: int = Field(
        2,
        ge=0,
        le=10,
        description="other sessions a request is given to when its session fails before the "
        "first byte reaches the editor",
    )
    cooldown_initial: float = Field(
        30, gt=0, description="cool-down of a refused session whose agent gave no reset time"
    )
    cooldown_max: float = Field(
        3600, gt=0, description="longest cool-down; each refusal in a row doubles the last"
    )

    @field_validator("fallbacks")
    @classmethod
    def _fallback_names(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for model, chain in value.items():
            for name in (model, *chain):
                if not MODEL_NAME_PATTERN.match(name):
                    raise ValueError(f"{name!r} in [models.fallbacks] is not a model name")
            if model in chain:
                raise ValueError(f"fallbacks of {model!r} loop: {model} -> {model}")
        return value

    @model_validator(mode="after")
    def _no_fallback_cycle(self) -> ModelsConfig:
        cycle = fallback_cycle(self.fallbacks)
        if cycle:
            raise ValueError("[models.fallbacks] loop: " + " -> ".join(cycle))
        return self

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


def fallback_cycle(fallbacks: dict[str, tuple[str, ...]]) -> list[str]:
    """A loop among ``fallbacks`` (its names, the first repeated at the end), or []."""
    done: set[str] = set()

    def visit(model: str, path: list[str]) -> list[str]:
        if model in path:
            return [*path[path.index(model) :], model]
        if model in done:
            return []
        for nxt in fallbacks.get(model, ()):
            found = visit(nxt, [*path, model])
            if found:
                return found
        done.add(model)
        return []

    for model in fallbacks:
        found = visit(model, [])
        if found:
            return found
    return []
