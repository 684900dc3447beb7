"""The model catalog: which model names the daemon answers to, and what each can do. No I/O.

Names come from the models active agent sessions advertised in ``hello``, plus the aliases in
the config's ``[models.aliases]`` table. ``foo`` and ``foo:latest`` are one name (as in Ollama),
and names compare without regard to case. Responses echo the name the client sent; the agent is
always asked for its own name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from mcp_local_provider.core import errors
from mcp_local_provider.core.config.models import ToolsMode
from mcp_local_provider.core.protocol import ModelSpec
from mcp_local_provider.core.registry import Registry, Session, SessionState

#: Capabilities an agent may declare for a model, and what each lets a client do.
CAPABILITIES = {
    "chat": "chat",
    "completion": "text completion",
    "fim": "fill-in-the-middle completion (a suffix)",
    "tools": "tool calls",
    "embedding": "embeddings",
    "vision": "images in messages",
    "thinking": "reasoning output",
    "structured": "structured output (response_format json_object or json_schema honoured)",
}
#: Other spellings agents use for the same capabilities.
_SYNONYMS = {
    "insert": "fim",
    "infill": "fim",
    "suffix": "fim",
    "embeddings": "embedding",
    "embed": "embedding",
    "tool": "tools",
    "tool_calls": "tools",
    "reasoning": "thinking",
    "image": "vision",
    "images": "vision",
    "json": "structured",
    "json_schema": "structured",
    "response_format": "structured",
    "structured_output": "structured",
}
LATEST = ":latest"
NO_SESSION = "no agent session is active: start an agent (mcp-local-provider agent) and approve it"


def capability(name: str) -> str:
    """The canonical spelling of a capability name."""
    lowered = name.strip().lower()
    return _SYNONYMS.get(lowered, lowered)


def capabilities_of(spec: ModelSpec) -> frozenset[str]:
    return _canonical(spec.capabilities)


@lru_cache(maxsize=1024)
def _canonical(capabilities: tuple[str, ...]) -> frozenset[str]:
    """Asked on every request, for the few lists agents declare: computed once per list."""
    return frozenset(capability(c) for c in capabilities)


def name_key(name: str) -> str:
    """What two names must share to be the same model: ``Foo:latest`` is ``foo``."""
    lowered = name.lower()
    return lowered[: -len(LATEST)] if lowered.endswith(LATEST) else lowered


def tagged(name: str) -> str:
    """Ollama's display form: a name always carries a tag (``foo`` -> ``foo:latest``)."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + LATEST


def session_can(session: Session, model: str, needed: str) -> bool:
    """Whether ``session`` declares capability ``needed`` for its model called ``model``."""
    return any(m.name == model and needed in capabilities_of(m) for m in session.models)


@dataclass(frozen=True)
class Entry:
    """One name the daemon answers to."""

    name: str  # as listed: the agent's own name, or the alias
    target: str  # the agent's name for the model
    capabilities: frozenset[str]
    context_length: int
    created: float  # when the first session serving it was created (Unix seconds)
    alias: bool = False

    @property
    def digest(self) -> str:
        """A stable 64-hex digest; names for the same agent model share it."""
        return hashlib.sha256(name_key(self.target).encode()).hexdigest()

    def supports(self, needed: str) -> bool:
        return needed in self.capabilities


class Catalog:
    """The names served right now. Looking one up costs the same with one session or a
    thousand: the active sessions are indexed by name until the registry's ``version`` moves."""

    def __init__(
        self,
        registry: Registry,
        aliases: Mapping[str, str],
        default_context_length: int,
        tools: ToolsMode = "drop",
        tools_per_model: Mapping[str, ToolsMode] | None = None,
        fallbacks: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.registry = registry
        #: Models that serve a request for a model no session serves (see the router).
        self.fallbacks = {name_key(k): v for k, v in (fallbacks or {}).items()}
        self._fallback_names = list(fallbacks or {})
        self.aliases = dict(aliases)
        self.default_context_length = default_context_length
        self.tools = tools
        self.tools_per_model = {name_key(k): v for k, v in (tools_per_model or {}).items()}
        # The first alias spelling of each name key wins, as a scan of ``aliases`` would find.
        self._alias_by_key: dict[str, tuple[str, str]] = {}
        for alias, target in self.aliases.items():
            self._alias_by_key.setdefault(name_key(alias), (alias, target))
        self._by_key: dict[str, tuple[Session, ...]] = {}
        self._indexed_version = -1

    def tools_mode(self, entry: Entry) -> ToolsMode:
        """What to do with tools for ``entry`` if its agent does not declare them: the
        setting for its listed name, else for its agent's name, else the default."""
        for name in (entry.name, entry.target):
            mode = self.tools_per_model.get(name_key(name))
            if mode is not None:
                return mode
        return self.tools

    def _served(self) -> dict[str, Entry]:
        """Agent models of the sessions offered to editors by name key, merged across sessions
        (an agent away for longer than the reconnect grace is not offered)."""
        served: dict[str, Entry] = {}
        for session in self.registry.serving():
            for spec in session.models:
                served[name_key(spec.name)] = self._merge(
                    served.get(name_key(spec.name)), spec, session.created_at
                )
        return served

    def _served_as(self, key: str) -> Entry | None:
        """``_served().get(key)``, looking only at the sessions that advertised the name: the
        active sessions by name key are kept until the registry's ``version`` moves, and only
        whether each is offered now (expiry, an agent away) is checked per lookup."""
        registry = self.registry
        if self._indexed_version != registry.version:
            by_key: dict[str, list[Session]] = {}
            for session in registry.in_state(SessionState.ACTIVE):
                for spec in session.models:
                    listed = by_key.setdefault(name_key(spec.name), [])
                    if not listed or listed[-1] is not session:
                        listed.append(session)
            self._by_key = {k: tuple(sessions) for k, sessions in by_key.items()}
            self._indexed_version = registry.version
        entry: Entry | None = None
        now = registry.clock()
        for session in self._by_key.get(key, ()):
            if registry.offers(session, now):
                for spec in session.models:
                    if name_key(spec.name) == key:
                        entry = self._merge(entry, spec, session.created_at)
        return entry

    def _merge(self, old: Entry | None, spec: ModelSpec, created: float) -> Entry:
        length = spec.context_length or self.default_context_length
        if old is None:
            return Entry(spec.name, spec.name, capabilities_of(spec), length, created)
        return Entry(
            old.name,
            old.target,
            old.capabilities | capabilities_of(spec),
            max(old.context_length, length),
            min(old.created, created),
        )

    def entries(self) -> list[Entry]:
        """Every name served now: agents' models first, then aliases whose target is served,
        then models no session serves but one of whose fallbacks is."""
        served = self._served()
        alias_keys = {name_key(a) for a in self.aliases}
        listed = [e for key, e in served.items() if key not in alias_keys]
        for alias, target in self.aliases.items():
            entry = served.get(name_key(target))
            if entry is not None:
                listed.append(_as_alias(entry, alias))
        for name in self._fallback_names:
            key = name_key(name)
            if key in served or key in alias_keys:
                continue
            entry = self._fallback_entry(name)
            if entry is not None:
                listed.append(entry)
        return listed

    def find(self, requested: str) -> Entry | None:
        key = name_key(requested)
        aliased = self._alias_by_key.get(key)
        if aliased is not None:
            alias, target = aliased
            entry = self._served_as(name_key(target))
            return None if entry is None else _as_alias(entry, alias)
        return self._served_as(key)

    def resolve(self, requested: str, needs: Iterable[str] = ()) -> Entry:
        """The entry for ``requested``; raises ModelNotFound, or Unsupported naming the
        first capability in ``needs`` the model lacks."""
        entry = self.find(requested)
        if entry is None and name_key(requested) in self.fallbacks:
            entry = self._fallback_entry(requested)
        if entry is None and not self.registry.count(SessionState.ACTIVE):
            raise errors.NoActiveSession(NO_SESSION)
        if entry is None and self._away(requested):
            raise errors.NoActiveSession(
                f"the agent serving {requested!r} disconnected and has not come back; "
                "it can still resume its session, or start it again"
            )
        if entry is None:
            raise errors.ModelNotFound(self._not_found(requested))
        require(entry, requested, needs)
        return entry

    def _fallback_entry(self, requested: str) -> Entry | None:
        """For a model no session serves: an entry under its own name with the first served
        fallback's capabilities; the router then moves the call along the fallbacks."""
        todo, seen = list(self.fallbacks.get(name_key(requested), ())), {name_key(requested)}
        while todo:
            name = todo.pop(0)
            if name_key(name) in seen:
                continue
            seen.add(name_key(name))
            found = self.find(name)
            if found is not None:
                return replace(found, name=requested, target=requested, alias=False)
            todo.extend(self.fallbacks.get(name_key(name), ()))
        return None

    def _away(self, requested: str) -> bool:
        """Whether an active session whose agent is away serves ``requested``."""
        key = name_key(requested)
        key = next((name_key(t) for a, t in self.aliases.items() if name_key(a) == key), key)
        return any(
            name_key(spec.name) == key
            for session in self.registry.in_state(SessionState.ACTIVE)
            if not session.connected
            for spec in session.models
        )

    def _not_found(self, requested: str) -> str:
        key = name_key(requested)
        target = next((t for a, t in self.aliases.items() if name_key(a) == key), None)
        if target is not None:
            return (
                f"model {requested!r} not found: it is an alias of {target!r}, "
                "which no active agent session serves"
            )
        names = sorted({e.name for e in self.entries()})
        if not names:
            return f"model {requested!r} not found: no active agent session serves any model"
        return f"model {requested!r} not found; models served now: {', '.join(names)}"


def require(entry: Entry, requested: str, needs: Iterable[str]) -> None:
    """Raise Unsupported naming the first capability in ``needs`` that ``entry`` lacks."""
    for needed in needs:
        if not entry.supports(needed):
            raise errors.Unsupported(
                f"model {requested!r} does not support {CAPABILITIES.get(needed, needed)}: "
                f"its agent does not declare the {needed!r} capability",
                param="model",
            )


def _as_alias(entry: Entry, alias: str) -> Entry:
    return Entry(
        alias, entry.target, entry.capabilities, entry.context_length, entry.created, alias=True
    )


@dataclass(frozen=True)
class ToolPlan:
    """Whether a request's tools go to the agent, and what the route must say about it."""

    offer: bool  # the tools are in the agent's payload
    declared: bool  # ... and the agent declares them (so the call needs the capability)
    dropped: bool  # the client offered tools the agent will not see (answered in text)


NO_TOOLS = ToolPlan(offer=False, declared=False, dropped=False)


def plan_tools(
    entry: Entry, requested: str, offered: bool, forced: bool, mode: ToolsMode
) -> ToolPlan:
    """The one decision every route makes about a request's tools.

    ``offered``: the request carries tools and ``tool_choice`` is not ``none``; ``forced``:
    ``tool_choice`` requires a call (``required``, Anthropic ``any``, a named function). A model
    whose agent declares ``tools`` gets them; otherwise ``mode`` decides: ``emulate`` passes them
    on, ``drop`` leaves them out (a forced call is refused), ``reject`` refuses the request.
    """
    if not offered:
        return NO_TOOLS
    if entry.supports("tools"):
        return ToolPlan(offer=True, declared=True, dropped=False)
    if mode == "emulate":
        return ToolPlan(offer=True, declared=False, dropped=False)
    lacks = (
        f"model {requested!r} does not support tool calls: its agent does not declare the "
        "'tools' capability"
    )
    if forced:
        raise errors.Unsupported(
            lacks + ", and tool_choice requires a tool call", param="tool_choice"
        )
    if mode == "reject":
        raise errors.Unsupported(lacks, param="tools")
    return ToolPlan(offer=False, declared=False, dropped=True)


#: The ``response_format`` types that ask for structured output (``text`` asks for nothing).
STRUCTURED_FORMATS = ("json_object", "json_schema")


def plan_format(entry: Entry, requested: str, asked: bool, mode: ToolsMode, param: str) -> bool:
    """Whether a request's structured output format (``asked``) goes to the agent: the same
    policy as tools. A model whose agent declares ``structured`` gets it; otherwise ``mode``
    decides: ``emulate`` passes it on, ``drop`` leaves it out (the route says so in a header),
    ``reject`` refuses the request naming ``param``, the dialect's field."""
    if not asked or entry.supports("structured") or mode == "emulate":
        return asked
    if mode == "reject":
        raise errors.Unsupported(
            f"model {requested!r} does not support structured output: its agent does not "
            "declare the 'structured' capability",
            param=param,
        )
    return False
