"""Scripted models for the example demos: plausible replies, so a demo runs without a model.

Each function returns a `respond` script for `podium.testing.ChatServer`. The script tells
which agent is asking from the system prompt (the agent's instructions) and what has happened
so far from the messages, and answers as that agent would: with a handoff, a tool call, a
ledger that fits the manager's output schema, or text. The same scripts drive the examples'
tests, so each demo takes the path its test checks.

`pace` scales the pause before each reply: 0 in tests; 1 in the demo, so that the live view
has something to show and the run feels like one against a model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from podium.testing.chat_server import ChatRequest, Reply, ToolCall

__all__ = ["Script", "content", "research", "software_change", "support"]

Script = Callable[[ChatRequest], Reply | str | None]

_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


class _Asked:
    """One request, read the way the scripts need it."""

    def __init__(self, request: ChatRequest, roles: Mapping[str, str], pace: float) -> None:
        self.request = request
        self.pace = pace
        system = request.system
        self.agent = next((name for name, marker in roles.items() if marker in system), None)
        title = re.search(r'"title": "(\w+)"', system)
        self.asked_for = title.group(1) if title else None  # the output schema's title
        self.structured = "Reply with only a JSON value" in system

    @property
    def task(self) -> str:
        """The first user message: the request itself."""
        for message in self.request.messages:
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""

    @property
    def last(self) -> str:
        """The last user message: this turn's instruction, or the newest thing said."""
        for message in reversed(self.request.messages):
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""

    def said_by(self, agent: str) -> list[str]:
        """What another participant said, in order (they reach the model as `[agent] ...`)."""
        prefix = f"[{agent}] "
        return [
            str(m["content"]).removeprefix(prefix)
            for m in self.request.messages
            if m.get("role") == "user" and str(m.get("content") or "").startswith(prefix)
        ]

    def last_speaker(self) -> str | None:
        """Who spoke last in the conversation (a `[agent] ...` message), if anyone did."""
        for message in reversed(self.request.messages):
            found = re.match(r"\[([\w-]+)\] ", str(message.get("content") or ""))
            if message.get("role") == "user" and found:
                return found.group(1)
        return None

    @property
    def own_turns(self) -> int:
        """How many times this agent spoke before in the conversation (its own messages)."""
        return sum(
            1 for m in self.request.messages if m.get("role") == "assistant" and m.get("content")
        )

    @property
    def tool_results(self) -> list[Any]:
        """The results of the tools called in this turn so far, as JSON where they are."""
        results: list[Any] = []
        for message in self.request.messages:
            if message.get("role") == "tool":
                content = str(message.get("content") or "")
                try:
                    results.append(json.loads(content))
                except ValueError:
                    results.append(content)
        return results

    # ---- replies, with a plausible pause and token counts ---------------------------------

    def _options(self, written: str, seconds: float) -> dict[str, Any]:
        read = sum(len(str(m.get("content") or "")) for m in self.request.messages)
        return {
            "delay": self.pace * seconds,
            "prompt_tokens": 20 + read // 4,
            "completion_tokens": 5 + len(written) // 4,
        }

    def text(self, content: str, seconds: float = 0.4) -> Reply:
        return Reply.text(content, **self._options(content, seconds))

    def json(self, value: Any, seconds: float = 0.25) -> Reply:
        return Reply.json(value, **self._options(json.dumps(value), seconds))

    def call(self, name: str, seconds: float = 0.2, **arguments: Any) -> Reply:
        return Reply.calls(
            ToolCall(name=name, arguments=arguments),
            **self._options(json.dumps(arguments), seconds),
        )

    def unknown(self) -> Reply:
        # Not retryable (a 400): a script that has no part for an agent is a bug to see at once.
        system = self.request.system[:80]
        return Reply.error(400, f"the demo's scripted model has no reply for: {system!r}")


# ---- support: triage hands the customer over; billing looks the invoice up -----------------

SUPPORT_ROLES = {
    "triage": "You are the triage agent",
    "billing": "You are ACME's billing specialist",
    "technical": "You are ACME's technical support engineer",
}


def support(pace: float = 0.0) -> Script:
    """Triage hands money questions to billing and the rest to technical; each uses its tool."""

    def respond(request: ChatRequest) -> Reply:
        asked = _Asked(request, SUPPORT_ROLES, pace)
        if asked.agent == "triage":
            money = re.search(r"invoice|charge|refund|bill|paid", asked.task, re.IGNORECASE)
            if money:
                return asked.call("handoff_to_billing", reason="a question about an invoice")
            return asked.call("handoff_to_technical", reason="a problem with the product")
        if asked.agent == "billing":
            return _billing(asked)
        if asked.agent == "technical":
            return _technical(asked)
        return asked.unknown()

    return respond


def _billing(asked: _Asked) -> Reply:
    results = asked.tool_results
    if not results:
        invoice = re.search(r"INV-\d+", asked.task)
        if invoice is None:
            return asked.text("Could you tell me the invoice number? It looks like INV-1042.")
        return asked.call("lookup_invoice", invoice_id=invoice.group(0))
    found = results[-1]
    if not isinstance(found, dict):
        return asked.text(
            "I could not find that invoice. Could you check the number on the PDF we sent? "
            "It looks like INV-1042."
        )
    amount = f"{found['currency']} {found['amount']:.2f}"
    if found["overcharged"] > 0:
        charges = " and ".join(c["id"] for c in found["charges"])
        return asked.text(
            f"You are right: invoice {found['invoice_id']} ({amount}, {found['status']}) was "
            f"charged twice on {found['charges'][-1]['on']} ({charges}). I have refunded the "
            f"duplicate charge of {found['currency']} {found['overcharged']:.2f}; it will be "
            "back on your card within 5 business days. Sorry for the trouble!"
        )
    return asked.text(
        f"Invoice {found['invoice_id']} is for {amount} and is {found['status']}; I see no "
        "duplicate charge on it. If your bank shows two, send me the statement line and I "
        "will look again today."
    )


def _technical(asked: _Asked) -> Reply:
    results = asked.tool_results
    if not results:
        service = "dashboard" if "dashboard" in asked.task.lower() else "api"
        return asked.call("service_status", service=service)
    status = results[-1]
    if isinstance(status, dict) and status.get("status") != "operational":
        return asked.text(
            f"The {status['service']} is {status['status']} right now: {status['note']}. "
            "Our engineers are on it; please retry in an hour, and reply here if it persists."
        )
    return asked.text(
        "The service is operational on our side. Please send me the request id of a failing "
        "call (the x-request-id header) and I will trace it."
    )


# ---- content: research, write, edit; three reviews; a revision -----------------------------

CONTENT_ROLES = {
    "researcher": "You are the researcher of a content team",
    "writer": "You are the writer of a content team",
    "editor": "You are the editor of a content team",
    "legal": "You are the legal reviewer",
    "brand": "You are the brand reviewer",
    "tech": "You are the technical reviewer",
}

FACTS = """\
- An agent run is many model and tool calls; any can fail or time out (provider status pages).
- A crash loses the work in memory unless each step's result is stored (Temporal docs).
- Running a completed step again can repeat a payment or an email (Stripe, idempotency keys).
- An event log of every decision lets a team replay and audit a run (Fowler, event sourcing).
- Budgets on tokens, cost and time stop a looping agent running up a bill (pricing pages)."""

DRAFT = """\
# Your AI agents need a memory of what they did

An AI agent that handles a refund makes a dozen calls: to a model, to the billing system, \
to email. Any of them can fail. Without a record of what already happened, the agent starts \
again from the top, and the customer may be refunded twice.

Durable workflows fix this. Every step's result is stored before the next one starts, so a \
crash or a deploy costs seconds, not the work. Teams that adopt them recover from incidents \
80% faster.

They also answer the question every manager asks after an incident: what did the agent do, \
and why? The event log is the answer, step by step.

Start with one workflow that touches money, and give it budgets for tokens, cost and time."""

EDITED = DRAFT.replace(
    "An AI agent that handles a refund makes a dozen calls",
    "An AI agent that handles a refund makes a dozen calls in a few seconds",
).replace("They also answer", "Durable workflows also answer")

REVISED = EDITED.replace(
    "Teams that adopt them recover from incidents 80% faster.",
    "Teams that adopt them tell us incidents stop meaning lost work: a run picks up where "
    "it stopped.",
)

VERDICTS = {
    "legal": {
        "verdict": "revise",
        "notes": "'recover from incidents 80% faster' is a claim we cannot support; cite a "
        "study or say what teams observe instead.",
    },
    "brand": {
        "verdict": "approve",
        "notes": "Plain, confident and friendly; no jargon left unexplained.",
    },
    "tech": {
        "verdict": "approve",
        "notes": "Accurate: results are stored before dependents start, and replay is "
        "described correctly.",
    },
}


def content(pace: float = 0.0) -> Script:
    """A draft with one unsupported claim: legal asks for a revision, the others approve."""

    def respond(request: ChatRequest) -> Reply:
        asked = _Asked(request, CONTENT_ROLES, pace)
        if asked.agent == "researcher":
            return asked.text(FACTS)
        if asked.agent == "writer":
            return asked.text(DRAFT, seconds=0.6)
        if asked.agent == "editor":
            revising = asked.last.startswith("Revise the article")
            return asked.text(REVISED if revising else EDITED, seconds=0.5)
        if asked.agent in VERDICTS:
            return asked.json(VERDICTS[asked.agent], seconds=0.45)
        return asked.unknown()

    return respond


# ---- software change: the author fixes; the lead moderates a review until APPROVED ----------

CHANGE_ROLES = {
    "author": "You are the author of a code change",
    "reviewer": "You are the code reviewer",
    "tester": "You are the tester",
    "lead": "You are the tech lead",
}

_TRUNCATE = '''

def truncate(text: str, length: int) -> str:
    """`text` cut to at most `length` characters, with an ellipsis if it was cut."""
    return text if len(text) <= length else text[: length - 1] + "…"
'''

FIRST_FIX = (
    '''"""Text helpers for URLs."""

import re


def slugify(title: str) -> str:
    """The URL slug of `title`: its words in lower case, joined by single dashes."""
    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))
'''
    + _TRUNCATE
)

SECOND_FIX = (
    '''"""Text helpers for URLs."""

import re
import unicodedata


def slugify(title: str) -> str:
    """The URL slug of `title`: its words in lower case, without accents, joined by dashes.

    A title with no letters or digits gives the empty string.
    """
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", plain.lower()))
'''
    + _TRUNCATE
)


def software_change(pace: float = 0.0) -> Script:
    """The first fix drops accents; the reviewer asks, the author fixes, the tester checks,
    and the reviewer says APPROVED."""

    def respond(request: ChatRequest) -> Reply:
        asked = _Asked(request, CHANGE_ROLES, pace)
        if asked.agent == "author":
            return _author(asked)
        if asked.agent == "lead" and asked.asked_for == "speaker_selection":
            return _lead(asked)
        if asked.agent == "reviewer":
            if asked.own_turns == 0:
                return asked.text(
                    "The regex fixes punctuation and repeated dashes. Two things before it "
                    "goes in: accented letters are dropped rather than transliterated "
                    "(slugify('Crème brûlée') gives 'cr-me-br-l-e'; normalise with "
                    "unicodedata first), and the docstring should say what a title with no "
                    "letters gives."
                )
            return asked.text(
                "APPROVED: accents are transliterated, punctuation and repeated dashes are "
                "gone, the empty case is documented, and check_patch passes."
            )
        if asked.agent == "tester":
            return _tester(asked)
        return asked.unknown()

    return respond


def _author(asked: _Asked) -> Reply:
    if asked.structured:  # the `code` step: read the file, then the change as JSON
        if not asked.tool_results:
            path = re.search(r"in (\S+):", asked.task)
            return asked.call("read_file", path=path.group(1) if path else "")
        path = re.search(r"in (\S+):", asked.task)
        return asked.json(
            {
                "path": path.group(1) if path else "",
                "summary": "slugify keeps only letters and digits and joins the words with "
                "single dashes; it is now typed and documented.",
                "code": FIRST_FIX,
            },
            seconds=0.6,
        )
    return asked.text(
        "Good catch. slugify now strips accents with unicodedata before it splits the "
        f"words, and the docstring covers the empty case:\n```python\n{SECOND_FIX}```",
        seconds=0.6,
    )


def _lead(asked: _Asked) -> Reply:
    last = asked.last_speaker()
    if last is None:
        choice, reason = "reviewer", "the reviewer reads the change first"
    elif last == "reviewer":
        choice, reason = "author", "the reviewer asked for changes"
    elif last == "author":
        choice, reason = "tester", "there is a new version to check"
    else:
        choice, reason = "reviewer", "the tester has checked the new version"
    return asked.json({"next_speaker": choice, "reason": reason}, seconds=0.2)


def _tester(asked: _Asked) -> Reply:
    results = asked.tool_results
    if not results:
        said = [asked.task, *asked.said_by("author")]
        blocks = [block for text in said for block in _PYTHON_BLOCK.findall(text)]
        path = re.search(r"change to (\S+)\.", asked.task)
        return asked.call(
            "check_patch",
            path=path.group(1) if path else "",
            code=blocks[-1] if blocks else "",
        )
    report = results[-1]
    if isinstance(report, dict) and report.get("passed"):
        return asked.text(
            f"check_patch passes all {len(report['checks'])} checks. The cases to test: "
            "slugify('Hello,  World!') == 'hello-world'; slugify('Crème brûlée') == "
            "'creme-brulee'; slugify('  --  ') == ''; slugify('Déjà vu 2') == 'deja-vu-2'."
        )
    failed = [c["check"] for c in report.get("checks", []) if not c["ok"]]
    return asked.text(f"check_patch fails: {', '.join(failed) or report}. Please fix it first.")


# ---- research: a manager plans, directs three agents round by round, and answers -----------

RESEARCH_ROLES = {
    "orchestrator": "You are the orchestrator of a research team",
    "researcher": "You are the researcher",
    "analyst": "You are the analyst",
    "writer": "You are the writer",
}

TEAM = ("researcher", "analyst", "writer")

INSTRUCTIONS = {
    "researcher": "Find what the sources say about heat pump performance in deep cold, "
    "running costs against electric heating in Oslo, and the cost of installing one.",
    "analyst": "Weigh the findings: the yearly saving against the installed cost, the "
    "payback time, and what could change the answer.",
    "writer": "Write a brief for the homeowner: the answer first, then the reasons, then the "
    "sources.",
}

ANALYSIS = (
    "The sources agree that an air-source heat pump keeps working in Oslo's winters "
    "(SCOP 2.6-3.1, still above 1.8 below -20 °C [S1]) against 1.0 for the current "
    "electric heating [S5], and cuts the heating bill by 45-60% [S2]. On a typical bill of "
    "NOK 25 000 a year that is NOK 11 000-15 000 saved; after the NOK 20 000 subsidy an "
    "installation of NOK 120 000-180 000 [S3] pays back in about 7-14 years. The answer "
    "turns on the house: with poor insulation or small radiators, flow temperatures rise "
    "and the saving shrinks [S3]. Confidence: moderate to high."
)

BRIEF = """\
Yes: an air-source heat pump is worth it for a 150 m² house in Oslo, if the house is \
reasonably insulated.

- It keeps working in Oslo's winters: seasonal efficiency of 2.6-3.1, and above 1.8 even \
below -20 °C [S1], against 1.0 for electric heating [S5].
- It cuts the heating bill by 45-60% [S2], about NOK 11 000-15 000 a year.
- Installed it costs NOK 120 000-180 000 before a subsidy of up to NOK 20 000 [S3]: a \
payback of roughly 7-14 years.
- Check the insulation and radiators first; they decide how much of the saving you get [S3].

Sources: [S1] Field trial of air-source heat pumps in cold climates (2023); [S2] Heating \
costs by technology, Nordic households (2024); [S3] Installer survey: heat pump retrofits; \
[S5] Electric boilers and resistive heating: a baseline."""


def research(pace: float = 0.0) -> Script:
    """The orchestrator plans, sends researcher, analyst and writer in turn, then answers."""

    def respond(request: ChatRequest) -> Reply:
        asked = _Asked(request, RESEARCH_ROLES, pace)
        if asked.agent == "orchestrator":
            return _orchestrator(asked)
        if asked.agent == "researcher":
            return _researcher(asked)
        if asked.agent == "analyst":
            return asked.text(ANALYSIS, seconds=0.5)
        if asked.agent == "writer":
            return asked.text(BRIEF, seconds=0.6)
        return asked.unknown()

    return respond


def _orchestrator(asked: _Asked) -> Reply:
    if asked.asked_for == "task_ledger":
        return asked.json(
            {
                "facts": [
                    "Given: a 150 m² house in Oslo, heated with electricity today.",
                    "To look up: heat pump efficiency in deep cold, running costs, "
                    "installation cost and subsidies.",
                    "To derive: the yearly saving and the payback time.",
                    "Guess: a typical heating bill of about NOK 25 000 a year.",
                ],
                "plan": [f"{who}: {INSTRUCTIONS[who]}" for who in TEAM],
            },
            seconds=0.5,
        )
    if asked.asked_for == "progress_ledger":
        spoken = [who for who in TEAM if asked.said_by(who)]
        waiting = [who for who in TEAM if who not in spoken]

        def judged(answer: Any, reason: str) -> dict[str, Any]:
            return {"reason": reason, "answer": answer}

        done = not waiting
        who = waiting[0] if waiting else "writer"
        return asked.json(
            {
                "is_request_satisfied": judged(
                    done, "the brief answers the question" if done else f"{who} has work to do"
                ),
                "is_in_loop": judged(False, "each round moved the work on"),
                "is_progress_being_made": judged(
                    True, f"{len(spoken)} of 3 steps of the plan done"
                ),
                "next_speaker": judged(who, "next in the plan"),
                "instruction_or_question": judged(INSTRUCTIONS[who], "the plan's next step"),
            }
        )
    if asked.asked_for == "final_answer":
        written = asked.said_by("writer")
        return asked.json({"answer": written[-1] if written else ANALYSIS})
    return asked.unknown()


def _researcher(asked: _Asked) -> Reply:
    results = asked.tool_results
    queries = ["heat pump cold climate performance", "heating cost retrofit Oslo subsidy"]
    if len(results) < len(queries):
        return asked.call("search_sources", query=queries[len(results)])
    found: dict[str, dict[str, str]] = {}
    for result in results:
        for source in result if isinstance(result, list) else []:
            found.setdefault(source["id"], source)
    lines = [f"- [{key}] {found[key]['text']}" for key in sorted(found)]
    return asked.text("What the sources say:\n" + "\n".join(lines), seconds=0.5)
