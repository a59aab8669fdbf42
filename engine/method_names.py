"""The implemented methods by name, importable without torch (the CLI's argument choices and --help)."""

METHODS = ("sano", "spr", "ppii", "cddpm", "dia")
