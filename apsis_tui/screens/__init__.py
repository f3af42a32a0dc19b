"""The TUI's screens, one a module: runs, run, jobs, job, timeline, dialogs."""
