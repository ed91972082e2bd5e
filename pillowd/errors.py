class PillowError(Exception):
    """Base of every error pillowd raises on purpose."""
