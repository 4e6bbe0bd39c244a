"""Networks of CAC (docs/architecture.md). This package file imports nothing, so that networks.config
and networks.weights (what the scripts' parsers read) load without torch: import from each module."""
