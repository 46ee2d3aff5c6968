"""cm-cli: the command-line door onto the Manager."""
