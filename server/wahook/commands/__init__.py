"""The `wahook` subcommands, one module each (see wahook.cli)."""
