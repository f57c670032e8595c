"""walltime: counts down a server's time limit and stops it through the hub's REST API."""
