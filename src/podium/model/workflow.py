"""The workflow as a value: steps, the agents they use, and their policies.

The YAML loader and the Python API both produce these objects; validation (references,
cycles, expressions) lives in `podium.spec`, so a `Workflow` built by hand is checked by the
same code as one read from a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from podium.errors import DefinitionError, Location
from podium.model.callables import CallableRef, callable_name

if TYPE_CHECKING:
    from podium.runtime.result import RunResult

Trigger = Literal["all_success", "one_success", "all_done", "none_failed"]
Reducer = Literal["replace", "append", "extend", "merge", "sum", "max", "min"]
REDUCERS: tuple[Reducer, ...] = ("replace", "append", "extend", "merge", "sum", "max", "min")
TRIGGERS: tuple[Trigger, ...] = ("all_success", "one_success", "all_done", "none_failed")

# The options of each orchestration pattern, written beside `pattern:` on a step. Every
# pattern takes the budget options too.
PATTERN_BUDGET = ("max_tokens", "max_cost", "max_seconds", "max_turns")
PATTERN_OPTIONS: dict[str, tuple[str, ...]] = {
    "sequential": ("agents", "context", *PATTERN_BUDGET),
    "concurrent": ("agents", "aggregator", "quorum", "agent_timeout", *PATTERN_BUDGET),
    "handoff": ("agents", "start", "graph", "max_handoffs", "human", *PATTERN_BUDGET),
    "group_chat": (
        "agents",
        "selector",
        "max_rounds",
        "allow_repeated_speaker",
        "termination",
        "manager_retries",
        *PATTERN_BUDGET,
    ),
    "magentic": (
        "agents",
        "manager",
        "max_rounds",
        "max_stalls",
        "max_resets",
        "manager_retries",
        "human",
        "review_plan",
        *PATTERN_BUDGET,
    ),
}
# What an agent may set beside `model:` (over the named model's own settings).
MODEL_SETTINGS = (
    "instructions",
    "tools",
    "agent_tools",
    "output_schema",
    "max_tool_calls",
    "max_output_retries",
    "temperature",
    "max_tokens",
    "price",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often a unit of work is tried, and how long to wait between attempts.

    `attempts` counts the first try: 3 means one try and up to two retries. The wait before
    attempt n+1 is `backoff * factor**(n-1)`, capped at `max_backoff` (seconds).
    """

    attempts: int = 1
    backoff: float = 0.0
    factor: float = 2.0
    max_backoff: float = 300.0
    jitter: float = 0.0
    on: tuple[str, ...] = ()
    not_on: tuple[str, ...] = ()

    def delay_after(self, attempt: int, *, spread: float = 0.5) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based) before the next.

        With `jitter` j, the wait is scaled by a factor in [1 - j, 1 + j], picked by
        `spread` in [0, 1] (the caller draws it, so that the choice can be recorded).
        """
        delay = min(self.backoff * self.factor ** (attempt - 1), self.max_backoff)
        return delay * (1.0 + self.jitter * (2.0 * spread - 1.0))

    def retries(self, error_types: tuple[str, ...]) -> bool:
        """Whether an error whose type (or a base type) is in `error_types` may be retried.

        `not_on` wins over `on`; an empty `on` means every error type.
        """
        if any(name in self.not_on for name in error_types):
            return False
        return not self.on or any(name in self.on for name in error_types)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """An agent call declared inside a step: a `fallback` or a `compensate`.

    Exactly one of `agent`, `capability` or `uses`; `with_` may read the step's scope
    (for `compensate`, `steps.<this step>.output` holds what is to be undone).
    """

    agent: str | None = None
    capability: str | None = None
    uses: CallableRef | None = None
    with_: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitPolicy:
    """Take an agent out of routing after `failures` failed calls within `window` seconds.

    After `cooldown` seconds one call probes it: success closes the circuit, failure opens
    it for another cooldown.
    """

    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingWeights:
    """How much each live figure of an agent counts when routing by capability.

    A candidate's score is the weighted sum of the logarithms of its figures' ratios to
    the best candidate's (latency, cost per call, success rate) and of 1 + its calls in
    flight; the lowest score is chosen (`podium.agents.routing`).
    """

    latency: float = 1.0
    cost: float = 1.0
    reliability: float = 1.0
    load: float = 1.0


ROUTING_PRESETS: dict[str, RoutingWeights] = {
    "balanced": RoutingWeights(),
    "fast": RoutingWeights(latency=3.0, cost=0.0),
    "cheap": RoutingWeights(latency=0.5, cost=3.0),
    "reliable": RoutingWeights(latency=0.5, cost=0.5, reliability=4.0),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """At most so many calls (and model tokens) a minute, as a token bucket.

    The bucket refills continuously and holds a second's worth (at least one call), so the
    calls are spread evenly rather than sent in a burst. Tokens are counted when a call
    reports them, so a call may take the bucket below zero: the next call waits until it
    is positive again.
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Adaptation:
    """Which policies of the adaptation controller a workflow lets change its run.

    `rate_limit`: an endpoint that answers HTTP 429 gets fewer calls at once (halved),
    then more again as calls succeed (one more per window of successes). `reroute`: a
    change of the agent routing prefers for a capability is recorded with its reason.
    `deadline`: a run falling behind its `deadline` gets more parallelism and fast routing.
    """

    rate_limit: bool = True
    reroute: bool = True
    deadline: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """What a model charges, in money per million tokens read (`input`) and written."""

    input: float = 0.0
    output: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """An agent that is a chat model behind an OpenAI-compatible endpoint, with tools.

    The key is read at call time from the environment variable named by `api_key_env`; it
    is never part of a definition. `base_url` None means the SDK's default (OpenAI, or
    `OPENAI_BASE_URL`). `tools` are Python callables (their typed signature becomes the
    tool's JSON schema); `agent_tools` name agents of the workflow (workflows included)
    that the model may call as tools. With `output_schema`, the reply must be JSON valid
    against it; an invalid reply is sent back with the error, up to `max_output_retries`.
    """

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    instructions: str = ""
    tools: tuple[CallableRef, ...] = ()
    agent_tools: tuple[str, ...] = ()
    output_schema: Mapping[str, Any] | None = None
    max_tool_calls: int = 16
    max_output_retries: int = 2
    temperature: float | None = None
    max_tokens: int | None = None
    price: Price | None = None
    rate_limit: RateLimit | None = None  # of the endpoint: shared by agents on it


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    """An agent as declared: what it runs, what it can do, how many calls it takes at once.

    It runs a Python callable (`uses`), a whole workflow (`workflow`: a file, relative to
    the declaring workflow's folder, or a `Workflow`), each call a child run of its own, or
    a chat model (`model`).
    """

    name: str
    uses: CallableRef | None = None
    workflow: str | Workflow | None = None
    model: ModelSpec | None = None
    capabilities: frozenset[str] = frozenset()
    concurrency: int | None = None
    description: str = ""
    circuit: CircuitPolicy | None = None
    rate_limit: RateLimit | None = None

    @property
    def endpoint(self) -> str:
        """What rate limits and 429s apply to: the model endpoint (shared by the agents
        calling the same model at the same URL), or the agent itself."""
        if self.model is None:
            return f"agent:{self.name}"
        return f"model:{self.model.model}@{self.model.base_url or 'default'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """A step that waits for a person: `podium approve RUN STEP [--data JSON] [--reject]`.

    `prompt` may hold expressions. `schema` (JSON Schema) checks the data given with the
    decision. After `timeout` seconds without a decision, `default` is applied if set;
    otherwise the run keeps waiting.
    """

    prompt: str
    schema: Mapping[str, Any] | None = None
    timeout: float | None = None
    default: Literal["approve", "reject"] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StateKey:
    """A key of the run's shared state, and how a write to it combines with its value.

    `reducer` is one of `REDUCERS` or a Python callable `(value, written) -> new value`.
    `initial` is the value before any write (None, or an empty list, mapping or zero as the
    reducer needs); `schema` (JSON Schema) checks every new value.
    """

    name: str
    reducer: Reducer | CallableRef = "replace"
    initial: Any = None
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Repeat:
    """Run a step (or its group of `steps`) again until `until` holds, at most `max_iterations`.

    `until` is read after each iteration, with that iteration's results in `steps`. When
    `max_iterations` are spent first, `on_max` says whether the step fails or succeeds.
    """

    until: str
    max_iterations: int
    on_max: Literal["fail", "continue"] = "fail"


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """A step that is an orchestration pattern: its kind and its options, as written.

    `PatternSpec("handoff", {"agents": ["triage", "billing"], "start": "triage"})`. The
    options are JSON data (callables as `"module:function"` paths), so the definition can
    be stored with the run; they are checked when the workflow is prepared.
    """

    kind: str
    options: Mapping[str, Any]


# Unlike the other values, a step has no slots: without them a dataclass keeps each field's
# default on the class, which lets `step_with` make a step by storing only what it sets.
@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a workflow. Exactly one of `agent`, `capability`, `uses`, `workflow` or
    `pattern` names who runs it — or the step is built in: `sleep` (seconds), `wait_until`
    (an expression giving an ISO 8601 time or epoch seconds) or `approval` (a person
    decides). A `workflow` step runs the child workflow as a run of its own, `with_` as its
    input; a `pattern` step runs a conversation among the workflow's agents.
    A step with `steps` is a group: its own steps run as a sub-graph, typically under a
    `repeat`. `writes` maps state keys to expressions over the step's `output`.
    `estimate` is the seconds the step is expected to take, for ordering ready steps when
    there are more than free slots (the agent's recorded history is used when there is one).

    `with_` is the step's input: any JSON-like value in which strings may hold `${{ }}`
    expressions. `condition` is the YAML `if`.
    """

    id: str
    agent: str | None = None
    capability: str | None = None
    uses: CallableRef | None = None
    needs: tuple[str, ...] = ()
    with_: Any = None
    condition: str | None = None
    trigger: Trigger = "all_success"
    for_each: str | None = None
    max_parallel: int | None = None
    retry: RetryPolicy = RetryPolicy()  # immutable, so one default serves every step
    timeout: float | None = None
    continue_on_error: bool = False
    description: str = ""
    sleep: float | None = None
    wait_until: str | None = None
    approval: Approval | None = None
    deadline: float | None = None  # seconds for all attempts together, from the first start
    fallback: Call | None = None
    compensate: Call | None = None
    workflow: str | Workflow | None = None  # a child workflow (file path, or built in code)
    writes: Mapping[str, Any] | None = None
    repeat: Repeat | None = None
    steps: Mapping[str, Step] | None = None  # a group: these steps run as one
    pattern: PatternSpec | None = None
    estimate: float | None = None
    uses_resources: Mapping[str, int] | None = None  # held by each unit while it runs

    @property
    def builtin(self) -> str | None:
        """`sleep`, `wait_until` or `approval` for a built-in step; None for an agent call."""
        if self.sleep is not None:
            return "sleep"
        if self.wait_until is not None:
            return "wait_until"
        if self.approval is not None:
            return "approval"
        return None

    @property
    def target(self) -> str:
        """Who runs the step, as a user would write it."""
        if self.builtin is not None:
            return self.builtin
        if self.steps is not None:
            return f"group of {len(self.steps)}"
        if self.pattern is not None:
            return f"pattern {self.pattern.kind!r}"
        if self.workflow is not None:
            name = self.workflow if isinstance(self.workflow, str) else self.workflow.name
            return f"workflow {name!r}"
        if self.agent is not None:
            return f"agent {self.agent!r}"
        if self.capability is not None:
            return f"capability {self.capability!r}"
        return f"uses {callable_name(self.uses)!r}"


_STEP_FIELDS = frozenset(Step.__dataclass_fields__)


def step_with(fields: Mapping[str, Any]) -> Step:
    """The step `Step(**fields)`, made without running `__init__`.

    A frozen dataclass's `__init__` sets each of a step's 27 fields by its own call to
    `object.__setattr__`, which is most of the cost of reading a workflow of many steps
    that each set a few. Here only `fields` (which must include `id`) are stored, in the
    step's `__dict__`; the others are read from the class, where the dataclass keeps their
    defaults. The step is equal to, and behaves as, the one `Step(**fields)` makes.
    """
    assert "id" in fields, fields
    assert fields.keys() <= _STEP_FIELDS, fields
    step = object.__new__(Step)
    step.__dict__.update(fields)
    return step


@dataclass(frozen=True, slots=True, kw_only=True)
class Guards:
    """Run-level fail-safes: exceeding one stops the run cleanly, with the reason.

    `max_steps` counts units started (retries included); `deadline` is seconds from the
    run's start; `max_output_bytes` bounds one unit's JSON output; `max_tokens` and
    `max_cost` bound the usage agents report (`ctx.report_usage`), summed over the run.
    """

    max_steps: int | None = None
    deadline: float | None = None
    max_output_bytes: int = 16 * 1024 * 1024
    max_tokens: int | None = None
    max_cost: float | None = None


@dataclass(frozen=True, slots=True, init=False, weakref_slot=True)
class Workflow:
    """A graph of steps. Build it with `Workflow.from_yaml` or in code:

        Workflow(name="order", steps=[Step(id="check", uses=check)], agents=[check_agent])

    Steps and agents may be given as lists (or as mappings by id). `locations` maps a path
    in the definition (`("steps", "check", "uses")`) to where it stands in the source file,
    so that errors found later still point at the text. `search_paths` are more folders to
    import `uses` modules from, after `base_dir` (an agent catalog's folder, say).
    `resources` are named capacities (`{"gpu": 2}`) that steps hold while they run
    (`Step.uses_resources`); a unit waits until what it needs is free.
    """

    name: str
    steps: Mapping[str, Step]
    agents: Mapping[str, AgentSpec]
    state: Mapping[str, StateKey]
    description: str
    input_schema: Mapping[str, Any] | None
    output: Any
    max_parallel: int | None
    guards: Guards
    routing: RoutingWeights
    resources: Mapping[str, int]
    adaptation: Adaptation
    source: str
    base_dir: str
    locations: Mapping[tuple[str | int, ...], Location]
    search_paths: tuple[str, ...]

    def __init__(
        self,
        *,
        name: str,
        steps: Mapping[str, Step] | Iterable[Step],
        agents: Mapping[str, AgentSpec] | Iterable[AgentSpec | Callable[..., Any]] = (),
        state: Mapping[str, StateKey] | Iterable[StateKey] = (),
        description: str = "",
        input_schema: Mapping[str, Any] | None = None,
        output: Any = None,
        max_parallel: int | None = None,
        guards: Guards | None = None,
        routing: RoutingWeights | None = None,
        resources: Mapping[str, int] | None = None,
        adaptation: Adaptation | None = None,
        source: str = "<python>",
        base_dir: str = "",
        locations: Mapping[tuple[str | int, ...], Location] | None = None,
        search_paths: Iterable[str] = (),
    ) -> None:
        if not isinstance(steps, Mapping):
            steps = _steps_by_id(steps)
        if not isinstance(agents, Mapping):
            agents = _agents_by_name(agents)
        if not isinstance(state, Mapping):
            state = {key.name: key for key in state}
        fields: dict[str, Any] = {
            "name": name,
            "steps": steps,
            "agents": agents,
            "state": state,
            "description": description,
            "input_schema": input_schema,
            "output": output,
            "max_parallel": max_parallel,
            "guards": guards or Guards(),
            "routing": routing or RoutingWeights(),
            "resources": resources or {},
            "adaptation": adaptation or Adaptation(),
            "source": source,
            "base_dir": base_dir or str(Path.cwd()),
            "locations": {} if locations is None else locations,
            "search_paths": tuple(search_paths),
        }
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    @property
    def module_folders(self) -> tuple[str, ...]:
        """Where the modules of its callables are imported from, before `sys.path`."""
        return (self.base_dir, *self.search_paths, str(Path.cwd()))

    def locate(self, *path: str | int) -> Location:
        """Where `path` (or its nearest enclosing key) stands in the source."""
        while path:
            found = self.locations.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.locations.get((), Location(self.source))

    def locator(self, *base: str | int) -> Callable[[tuple[str | int, ...]], Location]:
        """Where a path inside the value at `base` stands, as a function: a value's problems
        are located only if it has any, since finding a location is not free."""
        return lambda path: self.locate(*base, *path)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Workflow:
        """Read and validate a workflow file; raises `DefinitionError` with every problem."""
        from podium.spec import load_workflow

        return load_workflow(path)

    async def run(
        self,
        input: Any = None,
        *,
        store: str = ":memory:",
        run_id: str | None = None,
        max_parallel: int | None = None,
    ) -> RunResult:
        """Run the workflow to the end (or resume run `run_id`) and return its result."""
        from podium.runtime import run_workflow

        return await run_workflow(
            self, input, store=store, run_id=run_id, max_parallel=max_parallel
        )


AGENT_ATTRIBUTE = "__podium_agent__"


def agent(
    name: str | None = None,
    *,
    capabilities: Iterable[str] = (),
    concurrency: int | None = None,
    description: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a Python callable as an agent; pass it in `Workflow(agents=[...])`.

        @agent(capabilities={"inventory.check"}, concurrency=4)
        async def check(order: dict) -> dict: ...

    The function itself is returned unchanged, so it can still be called directly.
    """

    def declare(fn: Callable[..., Any]) -> Callable[..., Any]:
        spec = AgentSpec(
            name=name or fn.__name__,
            uses=fn,
            capabilities=frozenset(capabilities),
            concurrency=concurrency,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
        )
        setattr(fn, AGENT_ATTRIBUTE, spec)
        return fn

    return declare


def _steps_by_id(steps: Iterable[Step]) -> dict[str, Step]:
    result: dict[str, Step] = {}
    for step in steps:
        if step.id in result:
            raise DefinitionError(f"two steps are named {step.id!r}")
        result[step.id] = step
    return result


def _agents_by_name(agents: Iterable[AgentSpec | Callable[..., Any]]) -> dict[str, AgentSpec]:
    result: dict[str, AgentSpec] = {}
    for item in agents:
        spec = item if isinstance(item, AgentSpec) else getattr(item, AGENT_ATTRIBUTE, None)
        if not isinstance(spec, AgentSpec):
            raise DefinitionError(f"{item!r} is not an agent; declare it with @podium.agent")
        if spec.name in result:
            raise DefinitionError(f"two agents are named {spec.name!r}")
        result[spec.name] = spec
    return result
