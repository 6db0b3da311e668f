"""Alembic environment and versions, shipped inside the wheel as a package.

``bridge.store.migrate`` finds this folder through the package's resources, so ``microcue db
upgrade`` and ``microcue serve`` work from an installed wheel, not only from a checkout.
"""
