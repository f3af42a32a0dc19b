"""The domain: jobs, instances, runs and their states, as plain data."""
