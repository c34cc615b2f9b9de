"""One module per command; each defines ``COMMANDS``, a list of :class:`interp_app.command.Command`."""
