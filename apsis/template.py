"""Jinja2 templates in job files: strict, with Apsis's template args and functions.

Strict means an unknown name is an error, and it is found before rendering (so
also in a branch not taken), because `check-job` renders every template with
sample args: a typo must show up there, not at 3 a.m.

Templates come from job files, which may be less trusted than the daemon: they are
rendered in Jinja's sandbox (no `''.__class__.__mro__`), and with a budget of time and
size (`MAX_RENDERED_CHARS`, `RENDER_SECONDS`), so that a bomb is a clear error for its
run, never a daemon whose loop is stuck or whose memory is gone.

Template args, later ones winning (SPEC §1.2): the jobs directory's `globals`,
the expansions of the run's args (the `expand` tables), the run's args, `run_id`,
`job_id`.  Functions sit underneath all of them: `now()`, `today(tz)`,
`shquote(s)` (also the filter `|shquote`), `get_calendar(name)`, and the jobs
directory's extra `functions:` loaded from `module:attribute`.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import keyword
import shlex
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from .calendar import Calendar, CalendarResolver, get_calendar
from .errors import JobError
from .lib import timefmt
from .lib.strict import did_you_mean, type_name
from .parse_context import ParseContext
from .yamlload import YMap, loc_of, node_loc

# param → param value → extra template args.
ExpandTable = dict[str, dict[str, dict[str, Any]]]

# Keys of an expansion whose value is a calendar name, turned into a calendar object.
CALENDAR_KEYS = frozenset({"calendar"})


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; the message quotes the template."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.lineno = lineno  # the template's line it is about (1-based), when known


# --- the budget of one render -------------------------------------------------------------

MAX_RENDERED_CHARS = 1 << 20  # a command line is at most 2 MiB on Linux, one arg 128 KiB
RENDER_SECONDS = 1.0
_MAX_POWER_BITS = 4096  # `10 ** 10 ** 10` would compute for hours

_deadline: ContextVar[float] = ContextVar("apsis_render_deadline", default=float("inf"))


class _OverBudget(Exception):
    """A render that would take too long or make too much."""


def _spend() -> None:
    if time.monotonic() > _deadline.get():
        raise _OverBudget(f"rendering takes more than {RENDER_SECONDS:g} s (a loop too long?)")


def _check_size(size: int, what: str) -> None:
    if size > MAX_RENDERED_CHARS:
        raise _OverBudget(f"{what} would be more than {MAX_RENDERED_CHARS} characters")


def _budgeted(iterable: Iterable[Any]) -> Iterator[Any]:
    """What a `{% for %}` loops over, one item at a time against the deadline."""
    for item in iterable:
        _spend()
        yield item


_BUDGET_FILTER = "_apsis_budgeted"


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, where `*` and `**` cannot build a giant and every call spends time."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    _check_size(len(seq) * times, "a repetition")
        elif isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left).bit_length() * right > _MAX_POWER_BITS:
                raise _OverBudget(f"{left} ** {right} is too large a number")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _spend()
        return super().call(__context, __obj, *args, **kwargs)


# --- functions available in every template ------------------------------------------

def now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return timefmt.now()


def today(tz: str | dt.tzinfo = "UTC") -> str:
    """Today's date (`YYYY-MM-DD`) in time zone `tz`."""
    if isinstance(tz, str):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"today(): unknown time zone {tz!r} (write e.g. America/New_York)") from None
    return dt.datetime.now(tz).date().isoformat()


def shquote(value: Any) -> str:
    """`value` quoted as one word for a POSIX shell, so that args cannot inject commands."""
    return shlex.quote(str(value))


@functools.cache
def environment() -> jinja2.Environment:
    """The one Jinja environment of the process (compiled templates are cached against it)."""
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["shquote"] = shquote
    env.filters[_BUDGET_FILTER] = _budgeted
    env.globals.update(now=now, today=today, shquote=shquote, get_calendar=get_calendar)
    return env


# --- compiling and rendering ------------------------------------------------------------

def _syntax_error(source: str, exc: jinja2.TemplateSyntaxError) -> TemplateError:
    lines = source.splitlines()
    where = ""
    if exc.lineno and len(lines) > 1 and exc.lineno <= len(lines):
        where = f" at line {exc.lineno}: {lines[exc.lineno - 1].strip()!r}"
    return TemplateError(f"template syntax error: {exc.message}{where} in template {source!r}",
                         exc.lineno)


@functools.lru_cache(maxsize=8192)
def _parse(source: str) -> nodes.Template:
    """Parsed once per distinct source: checks walk the tree, never change it."""
    try:
        return environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(source, exc) from None


@functools.lru_cache(maxsize=8192)
def _compile(source: str) -> jinja2.Template:
    """Compiled once per distinct source, every loop's items spent against the budget."""
    env = environment()
    try:
        ast = env.parse(source)  # its own tree: the one `_parse` shares is never changed
        for loop in ast.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _BUDGET_FILTER, [], [], None, None,
                                     lineno=loop.iter.lineno)
        ast.set_environment(env)
        return env.from_string(ast)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(source, exc) from None


@functools.lru_cache(maxsize=8192)
def _required_names(source: str) -> tuple[str, ...]:
    """Names the template reads from its args, except those it only tests with `is defined`."""
    ast = _parse(source)
    tested = {
        test.node.name for test in ast.find_all(nodes.Test)
        if test.name in ("defined", "undefined") and isinstance(test.node, nodes.Name)
    }
    return tuple(sorted(jinja2.meta.find_undeclared_variables(ast) - tested))


@functools.lru_cache(maxsize=8192)
def template_names(template: str) -> frozenset[str]:
    """Every name a template reads that it does not define itself (for checks)."""
    return frozenset(jinja2.meta.find_undeclared_variables(_parse(template)))


@functools.lru_cache(maxsize=8192)
def _plain_names(source: str) -> frozenset[str] | None:
    """The names a template reads, if its output depends on nothing but their values:
    None if it calls anything (a function may read the clock) or uses `random`."""
    ast = _parse(source)
    if any(True for _ in ast.find_all(nodes.Call)) or any(
            f.name == "random" for f in ast.find_all(nodes.Filter)):
        return None
    return frozenset(jinja2.meta.find_undeclared_variables(ast))


def same_for_all(value: Any, targs: Mapping[str, Any], varying: Collection[str]) -> bool:
    """Whether `value` renders the same with these `targs` whatever its `varying` names
    hold, and whenever it is rendered: its templates read only plain (not callable)
    values of `targs`, none of `varying`.  The runs of a job with the same args render
    such a value once."""
    if isinstance(value, str):
        if "{" not in value:
            return True
        names = _plain_names(value)
        return names is not None and all(
            n in targs and n not in varying and not callable(targs[n]) for n in names)
    if isinstance(value, list):
        return all(same_for_all(v, targs, varying) for v in value)
    if isinstance(value, dict):
        return all(same_for_all(v, targs, varying) for v in value.values())
    return True


def _available(targs: Mapping[str, Any]) -> str:
    names = sorted(k for k, v in targs.items() if not callable(v) or isinstance(v, Calendar))
    return ", ".join(names) or "none"


def render(template: str, targs: Mapping[str, Any]) -> str:
    """Renders one template string; every failure is a `TemplateError` quoting the template."""
    if "{" not in template:  # no Jinja syntax at all: the common case for most strings
        return template
    compiled = _compile(template)
    env_globals = environment().globals
    for name in _required_names(template):
        if name not in targs and name not in env_globals:
            hint = did_you_mean(name, list(targs) + list(env_globals))
            first = min(n.lineno for n in _parse(template).find_all(nodes.Name) if n.name == name)
            raise TemplateError(f"undefined name {name!r}{hint} in template {template!r}; "
                                f"available: {_available(targs)}", first)
    budget = _deadline.set(time.monotonic() + RENDER_SECONDS)
    try:
        pieces, size = [], 0
        for piece in compiled.generate(targs):
            size += len(piece)
            _check_size(size, "the result")
            pieces.append(piece)
        return "".join(pieces)
    except _OverBudget as exc:
        raise TemplateError(f"{exc} in template {_head(template)}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"not allowed in a template: {exc} in template {template!r}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{exc.message} in template {template!r}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{exc.message or type(exc).__name__} in template {template!r}") from None
    except (ValueError, LookupError) as exc:  # a function refused its arguments
        raise TemplateError(f"{exc} in template {template!r}") from None
    # Any other failure of a function or method: the user must see which template.
    except Exception as exc:  # noqa: BLE001
        raise TemplateError(f"{type(exc).__name__}: {exc} in template {template!r}") from None
    finally:
        _deadline.reset(budget)


def _head(template: str, limit: int = 200) -> str:
    """The template quoted for a message, cut if long: it may be the bomb itself."""
    return repr(template) if len(template) <= limit else f"{template[:limit]!r}... ({len(template)} characters)"


def render_value(value: Any, targs: Mapping[str, Any]) -> Any:
    """Renders every string inside `value`, recursing into lists and dict values."""
    if isinstance(value, str):
        return render(value, targs)
    if isinstance(value, list):
        return [render_value(v, targs) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, targs) for k, v in value.items()}
    return value


# --- template args ----------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def load_function(spec: str) -> Any:
    """The object named by `module:attribute` (dots allowed in both parts), imported once."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise ValueError(f"{spec!r} is not 'module:attribute' (e.g. mycompany.calendars:fiscal_quarter)")
    try:
        obj: Any = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} for {spec!r}: {exc}") from None
    for part in attr.strip().split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{spec!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def load_functions(specs: Mapping[str, str] | None) -> dict[str, Any]:
    """Template functions from the `functions:` table (name → `module:attribute`)."""
    loaded = {}
    for name, spec in (specs or {}).items():
        try:
            loaded[name] = load_function(spec)
        except ValueError as exc:
            raise ValueError(f"template function {name!r}: {exc}") from None
    return loaded


def merge_expand(base: ExpandTable, over: ExpandTable) -> ExpandTable:
    """A job's `expand` over the jobs directory's: merged per param, per value, per arg."""
    if not over:
        return base
    merged = {param: dict(values) for param, values in base.items()}
    for param, values in over.items():
        table = merged.setdefault(param, {})
        for value, extra in values.items():
            table[value] = {**table.get(value, {}), **extra}
    return merged


def expand_args(args: Mapping[str, str], expansions: ExpandTable,
                calendars: Mapping[str, Calendar] | None = None) -> dict[str, Any]:
    """The extra template args the run's args stand for, via the `expand` tables.

    A `calendar` value is looked up (named calendars in `calendars` first) so that
    templates get a calendar object: `{{ calendar.shift(date, -1) }}` works and
    `{{ calendar }}` prints its name.  Raises `ValueError` for an unknown calendar.
    """
    extra: dict[str, Any] = {}
    for param, value in args.items():
        table = expansions.get(param)
        if not table:
            continue
        for name, arg in table.get(str(value), {}).items():
            if name in CALENDAR_KEYS and isinstance(arg, str):
                arg = get_calendar(arg, calendars)
            extra[name] = arg
    return extra


def template_args(*, globals_: Mapping[str, Any], expansions: Mapping[str, Any],
                  args: Mapping[str, str], run_id: str | None = None, job_id: str | None = None,
                  functions: Mapping[str, str] | None = None,
                  calendars: Mapping[str, Calendar] | None = None) -> dict[str, Any]:
    """Everything a template of a run sees, in SPEC §1.2's order (later wins).

    Functions come first so that an arg never loses to a function of the same name:
    a run is defined by its args.  Raises `ValueError` if a function cannot be loaded.
    """
    targs: dict[str, Any] = {}
    if calendars:
        targs["get_calendar"] = CalendarResolver(calendars)
    targs.update(load_functions(functions))
    targs.update(globals_)
    targs.update(expansions)
    targs.update(args)
    if run_id is not None:
        targs["run_id"] = run_id
    if job_id is not None:
        targs["job_id"] = job_id
    return targs


# --- checks -----------------------------------------------------------------------------

def _exposed_names(node: nodes.Node) -> set[str]:
    """Names whose value reaches the output of an expression without `shquote`."""
    if isinstance(node, nodes.Name):
        return {node.name}
    if isinstance(node, nodes.Filter):
        if node.name == "shquote":
            return set()
        operands = ([node.node] if node.node is not None else []) + list(node.args)
        return set().union(*(_exposed_names(child) for child in operands))
    if isinstance(node, nodes.Call):
        if isinstance(node.node, nodes.Name) and node.node.name == "shquote":
            return set()
        # What a function or method returns is its own affair (`calendar.shift(date, -1)`
        # is a date); what it is called on is not (`date.upper()`).
        return _exposed_names(node.node)
    if isinstance(node, (nodes.Compare, nodes.Test, nodes.Not, nodes.Const)):
        return set()  # booleans and constants are no injection
    branches: list[nodes.Node]
    if isinstance(node, nodes.CondExpr):  # the test only picks a branch
        branches = [node.expr1] if node.expr2 is None else [node.expr1, node.expr2]
    else:
        branches = list(node.iter_child_nodes())
    return set().union(*(_exposed_names(child) for child in branches))


def unquoted_args_in_shell(command_template: str, params: Iterable[str]) -> list[str]:
    """Params a shell command template outputs without `|shquote` (a `check-job` warning).

    A syntax error yields nothing here: rendering reports it.
    """
    try:
        ast = _parse(command_template)
    except TemplateError:
        return []
    wanted = set(params)
    found: list[str] = []
    for output in ast.find_all(nodes.Output):
        for expr in output.nodes:
            if isinstance(expr, nodes.TemplateData):
                continue
            for name in sorted(_exposed_names(expr)):
                if name in wanted and name not in found:
                    found.append(name)
    return found


def _expand_key(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is read as {type_name(value)}; quote it to mean the string")
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"expected a value, not {type_name(value)}")


def parse_expand(node: Any, ctx: ParseContext) -> ExpandTable:
    """An `expand:` section: param → param value → {template arg: scalar}; errors located.

    Calendar names are checked here (against the named calendars of `ctx`), so a
    typo fails at load, not when a run of that value comes along.
    """
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise JobError(f"expand must map params to tables of values, not {type_name(node)}",
                       node_loc(node))
    diags = ctx.diags
    table: ExpandTable = {}
    for param, values in node.items():
        param_loc = loc_of(node, param, node_loc(node))
        if not isinstance(values, dict):
            diags.error(f"expand.{param} must map values of {param!r} to template args, "
                        f"not {type_name(values)}", param_loc)
            continue
        by_value: dict[str, dict[str, Any]] = {}
        for value, extra in values.items():
            value_loc = loc_of(values, value, param_loc)
            with diags.collect():
                try:
                    key = _expand_key(value)
                except ValueError as exc:
                    key_loc = values.key_loc(value) if isinstance(values, YMap) else value_loc
                    raise JobError(f"expand.{param}: {exc}", key_loc) from None
                by_value[key] = _parse_extra(f"expand.{param}.{key}", extra, value_loc, ctx)
        table[str(param)] = by_value
    return table


def _parse_extra(where: str, extra: Any, loc: Any, ctx: ParseContext) -> dict[str, Any]:
    if not isinstance(extra, dict):
        raise JobError(f"{where} must map template arg names to values, not {type_name(extra)}", loc)
    parsed: dict[str, Any] = {}
    for name, value in extra.items():
        arg_loc = loc_of(extra, name, loc)
        with ctx.diags.collect():
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                key_loc = extra.key_loc(name) if isinstance(extra, YMap) else arg_loc
                raise JobError(f"{where}: {name!r} is not a usable template arg name "
                               f"(letters, digits and _, not starting with a digit)", key_loc)
            if isinstance(value, (dict, list)):
                raise JobError(f"{where}.{name}: expected a single value, not {type_name(value)}",
                               arg_loc)
            if name in CALENDAR_KEYS:
                if not isinstance(value, str):
                    raise JobError(f"{where}.{name}: expected a calendar name, not {type_name(value)}",
                                   arg_loc)
                try:
                    ctx.calendar(value)
                except ValueError as exc:
                    raise JobError(f"{where}.{name}: {exc}", arg_loc) from None
            parsed[name] = value
    return parsed


__all__ = [
    "ExpandTable",
    "TemplateError",
    "environment",
    "expand_args",
    "load_function",
    "load_functions",
    "merge_expand",
    "now",
    "parse_expand",
    "render",
    "render_value",
    "shquote",
    "template_args",
    "template_names",
    "today",
    "unquoted_args_in_shell",
]
