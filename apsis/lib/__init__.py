"""Small, dependency-free helpers shared by the daemon, the CLI and the checker."""
