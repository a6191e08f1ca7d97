"""The ``./taxbot`` command line: setup, run, train, chat, nlu, test, bench."""
