"""What every trackpipe process stands on: settings, topics, the compacted-topic views
(the registry), one partition read directly, Prometheus text. Imports only ``schemas``."""
