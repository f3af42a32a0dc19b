"""Reusable widgets of the Apsis TUI; each renders only what is visible.

Import from the modules (``apsis_tui.widgets.run_table``), so that using one widget
does not import the others.
"""
