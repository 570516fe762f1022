"""Help texts shared by the bench commands' options. No imports: ``bench/chat_leg.py``
loads this file beside another revision's packages (``bench chat --against``)."""

__all__ = ["BROKER_PER_LEG_HELP"]

BROKER_PER_LEG_HELP = (
    "--security both: a fresh broker for every leg, the only one up (default: one per "
    "mode, both up for the whole comparison). Its JVM is cold: both modes run slower."
)
