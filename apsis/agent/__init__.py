"""The process supervisor that runs programs for the daemon, locally or over ssh.

`agent.py` is the self-contained, stdlib-only agent (it is piped to remote hosts);
`client.py` is the daemon's asyncio client. Kept import-free so `connect` starts fast.
"""
