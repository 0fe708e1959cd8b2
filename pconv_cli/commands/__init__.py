"""One module per ``pconv`` subcommand. Each parses options, calls the core and prints."""
