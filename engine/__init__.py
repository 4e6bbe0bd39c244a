"""The machinery the scripts share; it imports only the layers below it (docs/architecture.md)."""
