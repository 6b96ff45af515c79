"""The live dashboard: scrapes gateways and workers, tails the actions, serves one page."""
