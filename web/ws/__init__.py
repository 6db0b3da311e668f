"""Websocket endpoints: the presenter's live feed (``live``)."""
