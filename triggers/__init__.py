"""The stream consumers that act on processed actions: trigger rules, webhooks, JS actions."""
