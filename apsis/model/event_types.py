"""The event stream's message types (SPEC §1.7): one list for the daemon's filter check,
the OpenAPI document and the CLI's, so a typo is refused where it is made."""

EVENT_TYPES: tuple[str, ...] = (
    "run_transition", "run_log", "output_appended", "job_added", "job_changed",
    "job_removed", "jobs_reloaded", "daemon", "reset",
)
