"""Optional parts a project wires in itself (URLs, panels): nothing here is
imported unless the project names it."""
