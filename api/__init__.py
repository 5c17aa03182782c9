"""HTTP API and command line: thin layers that parse input, call the engine and shape the answer."""
