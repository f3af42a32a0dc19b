"""Operations on runs: skip, start, stop, rerun, signal, mark; each run on its own.

One refused operation does not stop the others: each run gets a line, and the exit
code is that of the first run (in argument order) that failed: 2 unknown run, 1 refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import fmt
from .common import show_error
from .connect import call, is_api_error, translate
from .exitcodes import ExitStatus
from .parse import parse_run_id, parse_signal

if TYPE_CHECKING:
    from apsis.client import Client

DONE = {"skip": "skipped", "start": "started", "stop": "stopping", "signal": "signalled",
        "mark": "marked"}


def _created_runs(result: Any) -> list[dict[str, Any]]:
    """What `rerun` answered, as a list of runs (`{runs: [...]}` or one run)."""
    if isinstance(result, dict) and isinstance(result.get("runs"), list):
        return result["runs"]
    if isinstance(result, dict) and "run_id" in result:
        return [result]
    if isinstance(result, list):
        return result
    return []


def operate(obj: dict[str, Any], name: str, run_ids: tuple[str, ...], as_json: bool,
            arg: str | None = None) -> int:
    ids = [parse_run_id(r) for r in run_ids]
    sig = parse_signal(arg) if name == "signal" and arg else None

    async def main(client: Client) -> int:
        code = int(ExitStatus.SUCCESS)
        results: list[Any] = []
        for rid in ids:
            try:
                if name == "signal":
                    result = await client.signal(rid, sig or "")
                elif name == "mark":
                    result = await client.mark(rid, arg or "")
                else:
                    result = await getattr(client, name)(rid)
            except Exception as exc:
                from apsis.client import ApsisUnavailable

                if not is_api_error(exc) or isinstance(exc, ApsisUnavailable):
                    raise
                error = translate(exc, obj)
                # One line per run that failed, naming it once; the others go on.
                message = error.message if rid in error.message else f"{rid}: {error.message}"
                show_error(message, error.hint)
                code = code or error.exit_code
                continue
            if name == "rerun":
                created = _created_runs(result)
                results.extend(created)
                if not as_json:
                    for run in created:
                        click.echo(run.get("run_id"))
            else:
                results.append(result)
                if not as_json:
                    state = result.get("state") if isinstance(result, dict) else None
                    click.echo(f"{rid}: {state or DONE.get(name, name)}", err=True)
        if as_json:
            click.echo(fmt.dumps(results))
        return code

    return call(obj, main)
