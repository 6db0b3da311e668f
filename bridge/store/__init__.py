"""Storage: meetings, participants, cues, summaries and tokens (SQLAlchemy 2, async).

``db`` builds the engine from Settings, ``tables`` holds the models, ``repo`` the
keyword-only queries, ``writer`` batches cues from the bus into the database and
``migrate`` runs the Alembic migrations from code.

The service's lifespan owns them in this order, so shutdown loses no cue::

    await migrate.upgrade(settings)                  # a no-op when already at head
    engine = db.create_engine(settings)
    sessions = db.create_session_factory(engine)
    writer = StoreWriter(sessions, bus.subscribe())  # every meeting
    await writer.start()
    ...
    await bus.aclose()     # ends subscriptions; consumers drain what is queued
    await writer.aclose()  # flushes its buffer (bounded by close_timeout)
    await engine.dispose()
"""
