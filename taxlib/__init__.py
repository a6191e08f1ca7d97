"""Pure-Python helpers shared by both virtual environments (Rasa 3.10 and service 3.11).

Nothing here may import third-party packages: the Rasa venv pins old versions of everything,
the service venv new ones, and both import this package.
"""
