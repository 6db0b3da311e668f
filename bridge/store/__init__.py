"""Storage: meetings, participants, cues, summaries and tokens (SQLAlchemy 2, async).

``db`` builds the engine from Settings, ``tables`` holds the models, ``repo`` the
keyword-only queries, ``writer`` batches cues from the bus into the database and
``migrate`` runs the Alembic migrations from code (the service start-up calls
``migrate.upgrade``).
"""
