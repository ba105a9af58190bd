"""The browse UI: app, search, replay, templates and static files."""
