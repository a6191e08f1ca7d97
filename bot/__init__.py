"""The Rasa assistant: domain, rules, stories and the custom NLU components it loads."""
