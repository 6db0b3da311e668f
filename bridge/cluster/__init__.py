"""Running past one machine: the web role and bridge workers, which share only the broker and PostgreSQL.

``lease`` (one holder per meeting, fencing tokens), ``distributor`` (join requests on the MQTT v5
shared subscription, heartbeats, wills), ``worker_role`` (what ``microcue worker`` does),
``web_role`` (the web role's bot hook and room locator), ``health`` (the worker's probes and
metrics). See docs/cluster.md.
"""
