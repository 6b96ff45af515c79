"""What every trackpipe process stands on: settings, topics, the compacted-topic views
(the registry; ``compacted``: what a record does to a view), one partition read directly,
Prometheus text. Imports only ``schemas``."""
