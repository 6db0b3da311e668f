"""Helpers and fixtures shared by several test modules (no test module imports another).

Two kinds live here, kept apart so a reader knows which is which:

- ``tests/support/*.py``: real parts and tools (a real Janus, fresh PostgreSQL databases,
  chromium, polling with a deadline, hand-built cue streams). A test that uses them runs the
  real thing.
- ``tests/support/fakes/``: stand-ins for the product's own interfaces, one module per
  interface (the bus subscription, the analyzer, the model, the media track, the meeting
  adapter, the store's session factory). A test that needs a double takes it from there,
  configured by constructor options, instead of writing its own: one fake per interface
  means one place to change when the interface changes, and mypy checks each fake against
  its protocol (``tests/support/fakes`` is in mypy's files).
"""
