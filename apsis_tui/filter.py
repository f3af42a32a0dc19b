"""The Runs screen's filter language, parsed into a fast predicate over run dicts.

Terms are separated by spaces; double or single quotes keep spaces inside a term
(``job:"data/load prices"``). A leading ``!`` negates a term.

- ``job:NAME``       the job id contains NAME (case-insensitive)
- ``state:S[,S...]`` the state is one of these; a prefix names every state it starts
                     (``state:fail``), and ``finished`` / ``active`` / ``pending`` are
                     groups
- ``label:L``        the run carries label L
- ``NAME=VALUE``     the run's arg NAME is VALUE
- ``/path/prefix``   the job id starts with ``path/prefix``
- anything else      free text, found (case-insensitive) in the run id, job id or an
                     arg value; ``foo:bar`` with an unknown kind is free text too

Terms of one kind that a run can only match once (``job:``, ``state:``) are OR-ed;
all other terms are AND-ed, as people expect from a search box. Headless: no Textual.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apsis.present import ACTIVE_STATES, FAILED_STATES, FINISHED_STATES, PENDING_STATES, STATES

STATE_GROUPS: dict[str, frozenset[str]] = {
    "finished": FINISHED_STATES,
    "active": ACTIVE_STATES,
    "pending": PENDING_STATES,
    "failed": FAILED_STATES,
}
KINDS = ("job", "state", "label")

Run = Mapping[str, Any]
Predicate = Callable[[Run], bool]


@dataclass(frozen=True, slots=True)
class Term:
    """One parsed term; ``kind`` is job, state, label, arg, path or text."""

    kind: str
    value: str
    name: str = ""  # the arg name, for kind "arg"
    negate: bool = False
    states: frozenset[str] = frozenset()  # for kind "state"


@dataclass(frozen=True, slots=True)
class RunFilter:
    """A parsed filter: call it with a run to test it."""

    text: str
    terms: tuple[Term, ...] = ()
    _predicate: Predicate = field(default=lambda run: True, repr=False, compare=False)

    def __call__(self, run: Run) -> bool:
        return self._predicate(run)

    @property
    def is_empty(self) -> bool:
        return not self.terms


def split_terms(text: str) -> list[str]:
    """Split on spaces honouring quotes; unbalanced quotes fall back to plain split."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def parse_states(value: str) -> frozenset[str]:
    """``running,fail`` -> {running, failure}; unknown names match nothing."""
    states: set[str] = set()
    for part in value.lower().split(","):
        part = part.strip()
        if not part:
            continue
        if part in STATE_GROUPS:
            states |= STATE_GROUPS[part]
        elif part in STATES:
            states.add(part)
        else:
            states.update(s for s in STATES if s.startswith(part))
    return frozenset(states)


def parse_term(word: str) -> Term:
    negate = word.startswith("!") and len(word) > 1
    if negate:
        word = word[1:]
    kind, sep, value = word.partition(":")
    if sep and kind.lower() in KINDS and value:
        kind = kind.lower()
        if kind == "state":
            return Term("state", value, negate=negate, states=parse_states(value))
        return Term(kind, value, negate=negate)
    name, sep, value = word.partition("=")
    if sep and name and " " not in name:
        return Term("arg", value, name=name, negate=negate)
    if word.startswith("/"):
        return Term("path", word.strip("/"), negate=negate)
    return Term("text", word, negate=negate)


def parse(text: str) -> RunFilter:
    """Parse a filter string; never raises: what is not understood is free text."""
    terms = tuple(parse_term(word) for word in split_terms(text))
    return RunFilter(text, terms, _compile(terms))


def _term_predicate(term: Term) -> Predicate:
    value = term.value
    if term.kind == "job":
        needle = value.lower()
        return lambda run: needle in run.get("job_id", "").lower()
    if term.kind == "state":
        states = term.states
        return lambda run: run.get("state") in states
    if term.kind == "label":
        return lambda run: value in (run.get("labels") or ())
    if term.kind == "arg":
        name = term.name
        return lambda run: (run.get("args") or {}).get(name) == value
    if term.kind == "path":
        if not value:
            return lambda run: True
        prefix = value + "/"
        # A path names a folder or a job: "/data" matches "data/x" and "data", not "database".
        return lambda run: (job := run.get("job_id", "")) == value or job.startswith(prefix)
    needle = value.lower()

    def text_predicate(run: Run) -> bool:
        if needle in run.get("run_id", "").lower() or needle in run.get("job_id", "").lower():
            return True
        args = run.get("args")
        return any(needle in str(v).lower() for v in args.values()) if args else False

    return text_predicate


def _compile(terms: tuple[Term, ...]) -> Predicate:
    """Build one closure: OR within job/state terms, AND across everything else."""
    if not terms:
        return lambda run: True
    groups: dict[object, tuple[int, list[Predicate]]] = {}
    for index, term in enumerate(terms):
        predicate = _term_predicate(term)
        if term.negate:
            predicate = _negate(predicate)
        # job and state terms OR together; every other term is required on its own.
        key: object = term.kind if term.kind in ("job", "state") and not term.negate else index
        cost = 1 if term.kind == "text" else 0  # cheap structural tests first
        groups.setdefault(key, (cost, []))[1].append(predicate)
    required = [
        preds[0] if len(preds) == 1 else _any_of(preds)
        for _, preds in sorted(groups.values(), key=lambda group: group[0])
    ]
    if len(required) == 1:
        return required[0]
    return lambda run: all(p(run) for p in required)


def _negate(predicate: Predicate) -> Predicate:
    return lambda run: not predicate(run)


def _any_of(predicates: list[Predicate]) -> Predicate:
    return lambda run: any(p(run) for p in predicates)


def format_term(kind: str, value: str, name: str = "") -> str:
    """A term as text, quoted when needed (for adding a row's job or arg to a filter)."""
    if kind == "arg":
        word = f"{name}={value}"
    elif kind == "path":
        word = "/" + value
    elif kind == "text":
        word = value
    else:
        word = f"{kind}:{value}"
    return shlex.quote(word) if any(c.isspace() or c in "'\"" for c in word) else word


def add_term(text: str, term: str) -> str:
    """Append a term to a filter string unless an equal term is already there."""
    present = split_terms(text)
    if all(word in present for word in split_terms(term)):
        return text
    return f"{text.rstrip()} {term}".strip()
